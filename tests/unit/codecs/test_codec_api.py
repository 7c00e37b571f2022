"""The plugin-facing codec API (codecs/base.py): one capability declaration, read through
``capabilities_of`` (old-style codecs too), and the compute costs each codec declares."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from diffstream.codecs.base import (
    Capabilities,
    Codec,
    Encoded,
    GenerationRequest,
    capabilities_of,
    declared_costs,
)
from diffstream.codecs.registry import builtin_codec_names, codec_class
from diffstream.pipeline.compute import ProfileCost


class _Plain:
    name: ClassVar[str] = "plain"

    def encode(self, image: np.ndarray, budget_bits: int) -> Encoded:
        return Encoded(b"")

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
        return np.zeros((*shape, 3), np.uint8)

    def min_bits(self, shape: tuple[int, int]) -> int:
        return 8


class OldProgressive(_Plain):
    progressive: ClassVar[bool] = True  # the older contract's flag

    def prefix_steps(self, payload: bytes, meta: dict[str, Any]) -> int:
        return 1


class OldGenerative(_Plain):
    progressive: ClassVar[bool] = False

    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        return Encoded(b"")

    def reference(self, request: GenerationRequest, shape: tuple[int, int]) -> np.ndarray:
        return np.zeros((*shape, 3), np.uint8)


class NewGenerative(OldGenerative):
    capabilities: ClassVar[Capabilities] = Capabilities(generative=True)
    progressive: ClassVar[bool] = True  # ignored: the declaration wins


def test_old_style_codecs_keep_working() -> None:
    assert capabilities_of(_Plain) == Capabilities()
    assert capabilities_of(OldProgressive) == Capabilities(progressive=True)
    assert capabilities_of(OldProgressive()) == Capabilities(progressive=True)  # instances too
    assert capabilities_of(OldGenerative) == Capabilities(generative=True)
    assert isinstance(OldProgressive(), Codec)  # capabilities are no Protocol member
    assert declared_costs(_Plain) == {}  # no costs: charged what it measured


def test_the_declaration_wins_over_old_flags() -> None:
    assert capabilities_of(NewGenerative) == Capabilities(generative=True)


def test_a_declaration_without_its_methods_is_refused() -> None:
    class NoPrefix(_Plain):
        capabilities = Capabilities(progressive=True)

    class NoReference(_Plain):
        def generate(self, request: GenerationRequest, budget_bits: int,
                     shape: tuple[int, int]) -> Encoded:
            return Encoded(b"")

    class Wrong(_Plain):
        capabilities = {"progressive": True}

    with pytest.raises(TypeError, match="prefix_steps"):
        capabilities_of(NoPrefix)
    with pytest.raises(TypeError, match="reference"):
        capabilities_of(NoReference)
    with pytest.raises(TypeError, match="Capabilities"):
        capabilities_of(Wrong)


@pytest.mark.parametrize(("name", "caps"), [
    ("jpeg", Capabilities()), ("webp", Capabilities()), ("gic", Capabilities()),
    ("lic", Capabilities()), ("diffc", Capabilities(progressive=True)),
    ("badiff", Capabilities(generative=True)), ("cascade", Capabilities(generative=True)),
    ("cascade-lic", Capabilities(generative=True)),
    ("earlystop-lic", Capabilities(generative=True)),
])
def test_builtin_codecs_declare_their_capabilities(name: str, caps: Capabilities) -> None:
    cls = codec_class(name)
    assert "capabilities" in {k for c in cls.__mro__ for k in vars(c)}  # declared, not guessed
    assert capabilities_of(cls) == caps
    assert not hasattr(cls, "progressive")  # one declaration only


def test_every_builtin_codec_declares_a_cpu_cost() -> None:
    """The successor of the central table's coverage test: the costs live in the codecs."""
    names = set(builtin_codec_names())
    assert {"jpeg", "webp", "gic", "lic", "diffc", "badiff", "cascade"} <= names
    for name in names:
        assert "cpu-2core" in declared_costs(codec_class(name)), name


def test_each_codec_owns_its_cost_dict() -> None:
    """``compute_costs`` is a plain dict per class: adding a profile to one codec (as the
    paper-derived GPU profiles do) must not leak into another."""
    owners = {}
    for name in builtin_codec_names():
        cls = codec_class(name)
        if "costs_for" in vars(cls) or not hasattr(cls, "compute_costs"):
            continue
        costs = cls.compute_costs
        assert isinstance(costs, dict)
        assert id(costs) not in owners, f"{name} shares its dict with {owners.get(id(costs))}"
        owners[id(costs)] = name


def test_today_cpu_costs_moved_unchanged() -> None:
    """The numbers of the former central cpu-2core table, now declared by the codecs."""
    expected = {
        "jpeg": (0.4, 0.15, 0.0, None), "webp": (2.0, 0.2, 0.0, None),
        "gic": (8.4, 20.4, 0.0, None), "lic": (8.3, 7.1, 0.0, None),
        "diffc": (40.0, 30.0, 13.0, None), "badiff": (10.0, 4.5, 8.5, 0.0),
        "cascade-lic": (10.0, 4.5, 8.1, 0.0), "cascade-jpeg": (1.0, 0.2, 8.1, 0.0),
        "cascade-webp": (2.5, 0.2, 8.1, 0.0), "earlystop-lic": (60.0, 4.5, 8.1, 0.0),
        "dpmsolver-lic": (10.0, 4.5, 8.1, 0.0), "pndm-lic": (10.0, 4.5, 8.1, 0.0),
    }
    for name, (enc, dec, step, dstep) in expected.items():
        c = declared_costs(codec_class(name))["cpu-2core"]
        assert (c.encode_ms, c.decode_ms, c.per_step_ms, c.decode_per_step_ms) == (
            enc, dec, step, dstep), name


def test_costs_for_hook_and_validation() -> None:
    class Composed(_Plain):
        @classmethod
        def costs_for(cls, options: dict[str, Any]) -> dict[str, ProfileCost]:
            return {"p": ProfileCost(encode_ms=options.get("n", 1), decode_ms=0)}

    class Bad(_Plain):
        compute_costs: ClassVar[dict[str, Any]] = {"p": {"encode_ms": 1}}

    assert declared_costs(Composed, {"n": 5})["p"].encode_ms == 5
    assert declared_costs(Composed())["p"].encode_ms == 1
    with pytest.raises(TypeError, match="ProfileCost"):
        declared_costs(Bad)
