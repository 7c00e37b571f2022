"""BADiff's baselines (paper 000 §4.1) as one composed generative codec: a generator on the
plain DDPM, then any codec fitted to the budget.

``codec: cascade`` with ``codec_options: {generator: G, codec: C, codec_options: {...}}``:

- generator ``full``: THE full-step sample (the quality reference itself, 100 respaced
  ancestral steps), then the codec fits it to the budget: the paper's Cascade. With
  ``steps: K`` (full only) the same ancestral sampler runs on K respaced steps instead: the
  compute-matched baseline of issue 16 (the DDPM at BADiff's mean step count, then LIC).
- generator ``earlystop``: naive early stop. The same sampler runs; every ``check_every``
  (5) steps the predicted x_0 is coded at the codec's finest quality; the run is truncated
  at the last check whose code still fits the budget ("the smallest t whose compressed
  output satisfies the target bpp"): sampling stops at the first check that does not fit
  *after one that did* (the x_0 predictions of the first steps are amplified noise, too
  costly to fit, and are not candidates), and that earlier x_0 is sent, coded with rate
  control at the full budget. If no check ever fits, the full run is sent. Steps = U-Net
  calls actually run (the overshooting check included). "Finest quality": LIC / GIC at q
  index 0 (their finest step, without touching their rate control); any other codec, its
  ``encode`` under a raw-size budget (24 bpp), its best quality in practice.
- generator ``dpmsolver`` / ``pndm``: diffusers' DPM-Solver++ (2nd order, 20 steps) and
  PNDM (PLMS, 50 steps) from the same x_T, then the codec at the budget.

The codec C is any codec reference ``diffstream.codecs.create_codec`` accepts (a built-in
name or a registered plugin), built with C's own ``codec_options``. The paper's cascades use
BPG and Cheng2020; BPG is not installed, JPEG/WebP stand in, and LIC is the project's own
hyperprior codec.

The names of the first version stay, as aliases of compositions (their scenarios, records
and compute costs unchanged; their ``codec_options`` are the inner codec's):
``cascade-jpeg`` / ``cascade-webp`` / ``cascade-lic`` = full + jpeg / webp / lic,
``earlystop-lic`` = earlystop + lic (and its ``check_every``), ``dpmsolver-lic`` /
``pndm-lic`` = dpmsolver / pndm + lic.

All payloads are the inner codec's real bytes; decode is the inner codec's decode. The
composed codec is generative and not progressive (a progressive inner codec's frames are
decoded whole).

Compute costs. An alias declares the costs measured for it (``compute_costs``). A
composition (and an alias, for profiles it does not declare) is charged, per profile that
both know: the generator's cost per U-Net step (``GENERATOR_COSTS``, at the sender) plus
the inner codec's per-call encode and decode costs (Early-Stop: its encode once per check
too, an upper bound: up to N_FULL / check_every checks). An inner codec with per-step
costs (DiffC) has no composed cost: it is charged what it measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import torch

from diffstream.codecs.badiff.samplers import (
    N_FULL,
    _check_request,
    ddpm_sample,
    load_plain_ddpm,
    one_thread,
    reference_image,
    solver_sample,
)
from diffstream.codecs.base import (
    Capabilities,
    Encoded,
    GenerationRequest,
    Image,
    declared_costs,
)
from diffstream.codecs.registry import codec_class, create_codec, register_codec
from diffstream.pipeline.compute import ProfileCost
from diffstream.training.crops import to_uint8

Generator = Literal["full", "earlystop", "dpmsolver", "pndm"]
GENERATORS: tuple[str, ...] = get_args(Generator)
CHECK_EVERY = 5  # Early-Stop's default check interval (U-Net steps)
FINEST_BPP = 24.0  # "finest quality" budget for a codec without a finest-step hook: raw size

# Generator costs per device profile, at the sender (decode is the inner codec's): per_step_ms
# per U-Net call, encode_ms per call on top of the inner codec's. One plain dict per
# generator, so a profile can be added with update(). cpu-2core: the U-Net at 32x32, one
# torch thread, 8.1 ms per step (20-call mean, `python benchmarks/bench_badiff.py --seeds 6`).
GENERATOR_COSTS: dict[str, dict[str, ProfileCost]] = {
    g: {"cpu-2core": ProfileCost(encode_ms=0.0, decode_ms=0.0, per_step_ms=8.1,
                                 decode_per_step_ms=0.0)}
    for g in GENERATORS
}


def composed_costs(generator: str, inner: str, inner_options: Mapping[str, Any] | None = None,
                   check_every: int = CHECK_EVERY) -> dict[str, ProfileCost]:
    """Per profile that the generator and the inner codec both know: the generator's step
    cost plus the inner codec's per-call costs (see the module notes)."""
    inner_costs = declared_costs(codec_class(inner), inner_options)
    calls = 1 + (N_FULL // max(check_every, 1) if generator == "earlystop" else 0)
    out: dict[str, ProfileCost] = {}
    for profile, gen in GENERATOR_COSTS.get(generator, {}).items():
        c = inner_costs.get(profile)
        if c is None or c.per_step_ms > 0 or (c.decode_per_step_ms or 0.0) > 0:
            continue
        out[profile] = ProfileCost(encode_ms=gen.encode_ms + calls * c.encode_ms,
                                   decode_ms=c.decode_ms, per_step_ms=gen.per_step_ms,
                                   decode_per_step_ms=0.0)
    return out


class _Composed:
    """A generator, then an inner codec at the budget (set up by ``_compose``)."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities(generative=True)

    generator: str
    inner: Any
    check_every: int
    steps: int = N_FULL

    def _compose(self, generator: str, codec: str, codec_options: Mapping[str, Any] | None,
                 check_every: int | None, steps: int | None = None) -> None:
        if steps is not None:
            if generator != "full":
                raise ValueError(f"steps is an option of the full generator, not "
                                 f"{generator!r}")
            if not 1 <= int(steps) <= N_FULL:
                raise ValueError(f"steps must be in 1..{N_FULL}, got {steps}")
            self.steps = int(steps)
        if generator not in GENERATORS:
            raise ValueError(f"generator must be one of {', '.join(GENERATORS)}, "
                             f"got {generator!r}")
        if check_every is not None and generator != "earlystop":
            raise ValueError(f"check_every is an option of the earlystop generator, not "
                             f"{generator!r}")
        self.check_every = CHECK_EVERY if check_every is None else int(check_every)
        if self.check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.generator = generator
        self.inner = create_codec(codec, **dict(codec_options or {}))

    # --- generation ---------------------------------------------------------------------
    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        make: Callable[[GenerationRequest, int, tuple[int, int]],
                       tuple[np.ndarray, int, dict[str, Any]]] = {
            "full": self._full, "earlystop": self._early_stop,
            "dpmsolver": self._solver, "pndm": self._solver}[self.generator]
        image, steps, meta = make(request, int(budget_bits), shape)
        enc = self.inner.encode(image, int(budget_bits))
        enc.steps = steps
        enc.meta.update(meta)
        return enc

    def _full(self, request: GenerationRequest, budget: int, shape: tuple[int, int]
              ) -> tuple[np.ndarray, int, dict[str, Any]]:
        if self.steps == N_FULL:
            return reference_image(request, shape), N_FULL, {"sampler_steps": N_FULL}
        h, w = _check_request(request, shape)
        with one_thread():
            x0, calls = ddpm_sample(load_plain_ddpm(), request.seed, (h, w), self.steps)
        return to_uint8(x0)[0], calls, {"sampler_steps": calls}

    def _solver(self, request: GenerationRequest, budget: int, shape: tuple[int, int]
                ) -> tuple[np.ndarray, int, dict[str, Any]]:
        h, w = _check_request(request, shape)
        with one_thread():
            x0, calls = solver_sample(load_plain_ddpm(), self.generator, request.seed, (h, w))
        return to_uint8(x0)[0], calls, {"sampler_steps": calls}

    def _finest_bits(self, image: np.ndarray) -> int:
        """Payload bits of ``image`` at the inner codec's finest quality."""
        from diffstream.codecs.gic.codec import _LatentCodec

        if isinstance(self.inner, _LatentCodec):  # q index 0, outside its rate control
            return 8 * len(self.inner.coder.encode(self.inner.analyse(image), 0))
        raw = int(FINEST_BPP * image.shape[0] * image.shape[1])
        return self.inner.encode(image, raw).bits

    def _early_stop(self, request: GenerationRequest, budget: int, shape: tuple[int, int]
                    ) -> tuple[np.ndarray, int, dict[str, Any]]:
        h, w = _check_request(request, shape)
        kept: list[np.ndarray] = []
        stopped_at: list[int] = []

        def check(i: int, t: int, x: torch.Tensor, x0: torch.Tensor) -> bool:
            if (i + 1) % self.check_every:
                return False
            img = to_uint8(x0)[0]
            if self._finest_bits(img) <= budget:
                kept[:] = [img]
                return False
            if not kept:  # early x0 predictions are amplified noise: not yet a candidate
                return False
            stopped_at.append(i + 1)
            return True

        with one_thread():
            x0, calls = ddpm_sample(load_plain_ddpm(), request.seed, (h, w), N_FULL,
                                    callback=check)
        if stopped_at:
            image, note = kept[0], f"truncated at step {calls - self.check_every}"
        elif kept:
            image, note = to_uint8(x0)[0], "full run fits"
        else:
            image, note = to_uint8(x0)[0], "no step fits at the finest q: full run"
        return image, calls, {"sampler_steps": calls, "early_stop": note}

    # --- the rest of the contract: the inner codec's ------------------------------------
    def reference(self, request: GenerationRequest, shape: tuple[int, int]) -> Image:
        return reference_image(request, shape)

    def encode(self, image: Image, budget_bits: int) -> Encoded:
        return self.inner.encode(image, budget_bits)

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        return self.inner.decode(payload, meta, shape)

    def min_bits(self, shape: tuple[int, int]) -> int:
        return self.inner.min_bits(shape)


@register_codec("cascade")
class Cascade(_Composed):
    """``generator`` (full | earlystop | dpmsolver | pndm), then ``codec`` (any codec
    reference, built with ``codec_options``) at the budget. ``check_every``: earlystop only;
    ``steps``: full only (respaced ancestral steps, default 100)."""

    compute_costs: ClassVar[dict[str, ProfileCost]] = {}  # composed: see costs_for

    def __init__(self, generator: Generator = "full", codec: str = "lic",
                 codec_options: dict[str, Any] | None = None,
                 check_every: int | None = None, steps: int | None = None) -> None:
        self._compose(generator, codec, codec_options, check_every, steps)

    @classmethod
    def inner_codec(cls, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The inner codec and its options (for the scenario checks)."""
        return str(options.get("codec", "lic")), dict(options.get("codec_options") or {})

    @classmethod
    def costs_for(cls, options: Mapping[str, Any]) -> dict[str, ProfileCost]:
        inner, inner_options = cls.inner_codec(options)
        check = options.get("check_every")
        composed = composed_costs(str(options.get("generator", "full")), inner, inner_options,
                                  CHECK_EVERY if check is None else int(check))
        return {**composed, **cls.compute_costs}


class _Alias(_Composed):
    """A composition under its first-version name; its options are the inner codec's."""

    generator_name: ClassVar[str]
    inner_name: ClassVar[str]  # also what scenario.precheck follows for option checks

    def __init__(self, **inner_options: Any) -> None:
        self._compose(self.generator_name, self.inner_name, inner_options, None)

    @classmethod
    def costs_for(cls, options: Mapping[str, Any]) -> dict[str, ProfileCost]:
        """Its measured costs, over the composed ones for profiles it does not declare."""
        inner_options = {k: v for k, v in options.items() if k != "check_every"}
        composed = composed_costs(cls.generator_name, cls.inner_name, inner_options,
                                  int(options.get("check_every", CHECK_EVERY)))
        return {**composed, **cls.compute_costs}


# cpu-2core costs of the aliases: 32x32, one torch thread, `python benchmarks/bench_badiff.py
# --seeds 6` (the numbers behind BADiffCodec's comment): 8.1 ms per U-Net step, all at the
# sender; per call the coding (LIC ~10 ms with rate control, JPEG 1 ms, WebP 2.5 ms;
# Early-Stop also its LIC probes, 60 ms) and the receiver's decode (LIC 4.5 ms, JPEG/WebP
# 0.2 ms).
def _cpu(encode_ms: float, decode_ms: float) -> dict[str, ProfileCost]:
    return {"cpu-2core": ProfileCost(encode_ms=encode_ms, decode_ms=decode_ms, per_step_ms=8.1,
                                     decode_per_step_ms=0.0)}


@register_codec("cascade-jpeg")
class CascadeJpeg(_Alias):
    generator_name, inner_name = "full", "jpeg"
    compute_costs: ClassVar[dict[str, ProfileCost]] = _cpu(1.0, 0.2)


@register_codec("cascade-webp")
class CascadeWebp(_Alias):
    generator_name, inner_name = "full", "webp"
    compute_costs: ClassVar[dict[str, ProfileCost]] = _cpu(2.5, 0.2)


@register_codec("cascade-lic")
class CascadeLic(_Alias):
    generator_name, inner_name = "full", "lic"
    compute_costs: ClassVar[dict[str, ProfileCost]] = _cpu(10.0, 4.5)


@register_codec("earlystop-lic")
class EarlyStopLic(_Alias):
    generator_name, inner_name = "earlystop", "lic"
    compute_costs: ClassVar[dict[str, ProfileCost]] = _cpu(60.0, 4.5)

    def __init__(self, check_every: int = CHECK_EVERY, **inner_options: Any) -> None:
        self._compose(self.generator_name, self.inner_name, inner_options, check_every)


@register_codec("dpmsolver-lic")
class DpmSolverLic(_Alias):
    generator_name, inner_name = "dpmsolver", "lic"
    compute_costs: ClassVar[dict[str, ProfileCost]] = _cpu(10.0, 4.5)


@register_codec("pndm-lic")
class PndmLic(_Alias):
    generator_name, inner_name = "pndm", "lic"
    compute_costs: ClassVar[dict[str, ProfileCost]] = _cpu(10.0, 4.5)
