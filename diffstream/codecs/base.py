"""The Codec contract every image codec implements (the plugin API; docs/architecture.md,
"Codec").

A codec turns an RGB image into bytes no larger than a bit budget and back. The payload is
exactly what crosses the simulated link; ``meta`` is small side information that travels in
the wire-frame header (and therefore also crosses the link, counted as header bytes).

What a codec class declares, besides its methods:

- ``capabilities: ClassVar[Capabilities]``: whether it is progressive (payload prefixes
  decode) and generative (it serves generation requests). Read it with
  ``capabilities_of(codec_or_class)``, never by looking for methods or flags: that function
  also understands a codec written before ``Capabilities`` existed (a ``progressive``
  class variable, a ``generate`` method).
- ``compute_costs: ClassVar[dict[str, ProfileCost]]``: what a call costs in virtual time
  under each device profile it knows (profile name -> cost). A plain dict: more profiles
  can be added with ``update()``. Read it with ``declared_costs(cls, options)``; a class
  whose costs depend on its options (a composed codec) defines the classmethod
  ``costs_for(options)`` instead.
- optionally ``inner_codec(options) -> (name, options) | None`` (a classmethod): the inner
  codec a composed codec builds from its options, so the scenario checks can validate the
  inner options against the inner codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from diffstream.content.requests import GenerationRequest  # re-exported: part of the codec contract
from diffstream.pipeline.compute import ProfileCost

Image = np.ndarray  # H x W x 3, uint8, RGB


class CodecError(Exception):
    """A payload could not be decoded (corrupt, truncated, or from another codec)."""


@dataclass
class Encoded:
    """One encoded frame.

    payload: the bytes that cross the link (len(payload) * 8 <= budget unless ``skipped``).
    meta: msgpack-serialisable side information the decoder needs (knob value, shape, ...).
          Keep it small: it is sent in the frame header.
    skipped: True when no payload fits the budget (budget below the codec's floor); the
             payload is then empty and ``reason`` says why. The sender still sends a header-only
             frame so the receiver can account for the frame.
    steps: codec steps executed (diffusion steps; 1 for one-shot codecs); charged by
           compute profiles.
    """

    payload: bytes
    meta: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    reason: str = ""
    steps: int = 1

    @property
    def bits(self) -> int:
        return len(self.payload) * 8


@dataclass(frozen=True)
class Capabilities:
    """What a codec can do beyond encode/decode.

    progressive: a prefix of the payload decodes to a coarser image (DiffC: any prefix
                 ending on a step boundary). The codec then implements ``prefix_steps``
                 (``ProgressiveCodec``), and ``decode`` accepts a prefix.
    generative: the codec serves generation requests (``GenerativeCodec``: ``generate`` and
                ``reference``); a scenario must then say ``content: {source: generated}``.
    """

    progressive: bool = False
    generative: bool = False


def _class_of(codec: Any) -> type:
    return codec if isinstance(codec, type) else type(codec)


def capabilities_of(codec: Any) -> Capabilities:
    """A codec's (class or instance) capabilities: its ``capabilities`` declaration, or,
    for a codec written against the older contract, its ``progressive`` class variable and
    whether it defines ``generate``. Raises TypeError when the declaration promises
    methods the class lacks (progressive without ``prefix_steps``, generative without
    ``generate`` and ``reference``)."""
    cls = _class_of(codec)
    declared = getattr(cls, "capabilities", None)
    if isinstance(declared, Capabilities):
        caps = declared
    elif declared is not None:
        raise TypeError(f"{cls.__qualname__}.capabilities must be a "
                        f"diffstream.codecs.base.Capabilities, got {declared!r}")
    else:  # the older contract: a flag and a method
        caps = Capabilities(progressive=bool(getattr(cls, "progressive", False)),
                            generative=callable(getattr(cls, "generate", None)))
    missing = [m for m, needed in (("prefix_steps", caps.progressive),
                                   ("generate", caps.generative),
                                   ("reference", caps.generative))
               if needed and not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"codec {cls.__qualname__} declares {caps} but has no "
                        f"{' or '.join(missing)} method")
    return caps


def declared_costs(codec: Any, options: Mapping[str, Any] | None = None
                   ) -> Mapping[str, ProfileCost]:
    """The compute costs a codec (class or instance) declares: profile name -> cost.

    ``costs_for(options)`` when the class defines it (costs that depend on the options),
    else its ``compute_costs`` (inherited like any class attribute); empty when it
    declares none (it is then charged its measured time, unless a profile table has it).
    """
    cls = _class_of(codec)
    hook = getattr(cls, "costs_for", None)
    costs = hook(dict(options or {})) if callable(hook) else getattr(cls, "compute_costs", None)
    if costs is None:
        return {}
    if not isinstance(costs, Mapping) or not all(
            isinstance(k, str) and isinstance(v, ProfileCost) for k, v in costs.items()):
        raise TypeError(f"{cls.__qualname__}: compute costs must map profile names to "
                        f"ProfileCost, got {costs!r}")
    return costs


@runtime_checkable
class Codec(Protocol):
    """What the simulator needs from a codec.

    name: registry name used in scenarios (``codec: jpeg``), set by ``@register_codec``.
    A codec also declares ``capabilities`` and ``compute_costs`` (see the module notes);
    both are optional, so they are not Protocol members: ``isinstance(x, Codec)`` holds
    for a codec written against the older contract too.
    """

    name: ClassVar[str]

    def encode(self, image: Image, budget_bits: int) -> Encoded: ...

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        """Decode ``payload`` to an H x W x 3 uint8 image of ``shape`` = (H, W).

        Raises CodecError on a corrupt or truncated payload; never returns an image of
        another shape.
        """
        ...

    def min_bits(self, shape: tuple[int, int]) -> int:
        """The codec's typical floor for this shape: the smallest payload natural content
        usually needs (content dependent, so approximate).

        Policies plan with it (MPC treats lower budgets as skips); the encoder's own decision
        near it is authoritative and logged. It is deliberately not a strict lower bound: a
        flat frame encodes far smaller than any photograph, and planning on that bound would
        choose budgets the codec then has to skip.
        """
        ...


@runtime_checkable
class ProgressiveCodec(Codec, Protocol):
    """A codec whose payload prefixes decode (``Capabilities(progressive=True)``). A type
    for annotations; callers ask ``capabilities_of``, not ``isinstance``."""

    def prefix_steps(self, payload: bytes, meta: dict[str, Any]) -> int:
        """How many whole codec steps ``payload`` (the full payload or a prefix of it) holds:
        what ``decode`` of this prefix will use. Raises CodecError on a corrupt payload."""
        ...


@runtime_checkable
class GenerativeCodec(Codec, Protocol):
    """A codec that serves generation requests (BADiff and its baselines;
    ``Capabilities(generative=True)``). A type for annotations; callers ask
    ``capabilities_of``, not ``isinstance``.

    ``encode(image, budget)`` is not used for these frames; the sender calls ``generate``
    with the scenario's frame shape.
    ``reference`` is the quality reference of paper 000: the same request's full-step,
    unconstrained sample, identical in every process (sender and receiver compute it).
    """

    def generate(self, request: GenerationRequest, budget_bits: int,
                 shape: tuple[int, int]) -> Encoded:
        """An image of ``shape`` (H, W) for ``request``, coded within ``budget_bits``."""
        ...

    def reference(self, request: GenerationRequest, shape: tuple[int, int]) -> Image: ...
