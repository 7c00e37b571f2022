"""The Codec contract every image codec implements.

A codec turns an RGB image into bytes no larger than a bit budget and back. The payload is
exactly what crosses the simulated link; ``meta`` is small side information that travels in
the wire-frame header (and therefore also crosses the link, counted as header bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from diffstream.content.requests import GenerationRequest  # re-exported: part of the codec contract

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


@runtime_checkable
class Codec(Protocol):
    """What the simulator needs from a codec.

    name: registry name used in scenarios (``codec: jpeg``).
    progressive: True when a prefix of the payload decodes to a coarser image (DiffC: any
                 prefix ending on a step boundary). Such codecs also implement
                 ``ProgressiveCodec.prefix_steps``; ``decode`` then accepts a prefix.
    """

    name: ClassVar[str]
    progressive: ClassVar[bool]

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
    """A codec whose payload prefixes decode (``progressive = True``)."""

    def prefix_steps(self, payload: bytes, meta: dict[str, Any]) -> int:
        """How many whole codec steps ``payload`` (the full payload or a prefix of it) holds:
        what ``decode`` of this prefix will use. Raises CodecError on a corrupt payload."""
        ...



@runtime_checkable
class GenerativeCodec(Codec, Protocol):
    """A codec that serves generation requests (BADiff and its baselines).

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
