"""Encode and decode every crop with every codec at every target, and tabulate.

A crop's budget at target ``bpp`` is ``round(bpp * H * W)`` bits. Each codec encodes with
its own rate control (``codec.encode(image, budget)``); an ``Encoded`` with ``skipped=True``
is a skip. A sent crop counts ``len(payload) * 8`` bits: the payload only. ``meta`` (the
codec's side information, carried in the simulator's frame header with the other header
fields) is not counted: it is a few bytes whose size depends on how a codec chose to log
diagnostics (GIC's ``passes``), not on the image.

Work is done target by target: that target's reconstructions are tabulated and then
dropped, so memory holds one target's images, not all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from diffstream.codecs import Codec, CodecError
from diffstream.errors import DiffstreamError
from diffstream.evaluate.images import Crop
from diffstream.evaluate.scoring import Scorer
from diffstream.evaluate.tables import (
    Coded,
    ItemScore,
    RdRow,
    fixed_rows,
    overall_floor,
    rd_rows,
)


class EvaluationError(DiffstreamError):
    """A codec failed on its own output (a bug in the codec, not bad input): exit 1."""


@dataclass
class Timing:
    """Wall time of one codec's calls (rate control included in encode)."""

    encode_s: float = 0.0
    decode_s: float = 0.0
    encodes: int = 0
    decodes: int = 0
    over_budget: int = 0  # payloads larger than their budget (a codec contract breach)

    @property
    def encode_ms(self) -> float:
        return 1000 * self.encode_s / max(self.encodes, 1)

    @property
    def decode_ms(self) -> float:
        return 1000 * self.decode_s / max(self.decodes, 1)


@dataclass
class Evaluation:
    rows: list[RdRow]
    timings: dict[str, Timing] = field(default_factory=dict)


def budget_bits(target_bpp: float, shape: tuple[int, int]) -> int:
    return int(round(target_bpp * shape[0] * shape[1]))


def code_one(label: str, codec: Codec, crop: Crop, target: float, timing: Timing) -> Coded:
    """One crop through one codec at one target: a ``Coded`` result."""
    shape = crop.shape
    budget = budget_bits(target, shape)
    where = f"{label} on {crop.id} at {target:g} bpp ({budget} bits)"
    t0 = time.perf_counter()
    try:
        enc = codec.encode(crop.pixels, budget)
    except Exception as exc:
        raise EvaluationError(f"{where}: encode failed: {type(exc).__name__}: {exc}") from exc
    timing.encode_s += time.perf_counter() - t0
    timing.encodes += 1
    if enc.skipped:
        return Coded(label, target, crop.id, crop.pixels, None, 0, False)
    bits = len(enc.payload) * 8
    timing.over_budget += bits > budget
    t0 = time.perf_counter()
    try:
        recon = codec.decode(enc.payload, enc.meta, shape)
    except CodecError as exc:
        raise EvaluationError(f"{where}: the codec could not decode its own payload: "
                              f"{exc}") from exc
    timing.decode_s += time.perf_counter() - t0
    timing.decodes += 1
    if recon.shape != crop.pixels.shape:
        raise EvaluationError(f"{where}: decoded to {recon.shape}, expected "
                              f"{crop.pixels.shape}")
    return Coded(label, target, crop.id, crop.pixels, recon, bits, True)


Tick = Callable[[str], None]  # called after each encode/decode with a short description


def evaluate(codecs: dict[str, Codec], crops: Sequence[Crop], targets: Sequence[float],
             scorer: Scorer, *, tick: Tick | None = None,
             on_stage: Callable[[str], None] | None = None) -> Evaluation:
    """Every codec x target x crop, tabulated per target, plus the overall real floor."""
    labels = list(codecs)
    timings = {label: Timing() for label in labels}
    rows: list[RdRow] = []
    scalars: list[ItemScore] = []  # every result's bpp / PSNR, for the fixed set
    for target in targets:
        coded: list[Coded] = []
        for label, codec in codecs.items():
            for crop in crops:
                coded.append(code_one(label, codec, crop, target, timings[label]))
                if tick is not None:
                    tick(f"{label} @ {target:g} bpp")
            if on_stage is not None:
                sent = sum(c.sent for c in coded if c.codec == label)
                on_stage(f"{label} @ {target:g} bpp: {sent}/{len(crops)} sent")
        rows += rd_rows(coded, labels, scorer, collect=scalars)
        if on_stage is not None:
            on_stage(f"scored {target:g} bpp")
    rows += fixed_rows(scalars, labels)
    rows.append(overall_floor([c.pixels for c in crops], scorer, [c.id for c in crops]))
    return Evaluation(rows, timings)


def describe_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(options.items())) or "defaults"
