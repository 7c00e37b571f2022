"""The sender's codec side, shared by the simulator's sender worker and the live sender:
the scenario's content, the arm's codec, its rate-quality calibration, and one wire frame
per (frame, budget) with the codec time charged to the virtual clock.

The simulator runs it in the sender worker process (``sim.workers``, behind zmq messages);
live mode calls it directly in the sending process. Either way the same code encodes.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from diffstream.codecs import create_codec
from diffstream.codecs.base import Encoded, GenerationRequest, capabilities_of
from diffstream.content.sources import SPEC_KEYS, FrameSource, GeneratedSequence, make_source
from diffstream.control.policies.base import RateQualityModel
from diffstream.pipeline.compute import CodecCharge, ComputeModel
from diffstream.pipeline.costs import codec_charge
from diffstream.scenario.schema import Scenario
from diffstream.scenario.yaml_lines import resolve_in
from diffstream.transport.wire import FrameHeader, arm_tag, header_size, pack_frame

log = logging.getLogger("diffstream.encoder")

CALIBRATION_BPP = (0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
FLOOR_BISECTIONS = 4
FRAME_FLOOR_STEPS = 14  # per-frame floors: 4 bpp at 128x128 to within 4 bits
"""Halvings of the grid bracket around each calibration frame's floor (a bracket of 0.15 bpp
at 64x64, 614 bits, ends within 39 bits); each costs one encode per frame."""


@dataclass
class ArmInfo:
    """What the sender's controller needs to know about an arm's codec."""

    min_bits: int  # the floor: calibrated on the content, else the codec's min_bits(shape)
    progressive: bool
    rq: tuple[tuple[float, ...], tuple[float, ...]] | None  # (bpp, quality) calibration
    header_bytes: int  # a typical wire-frame header, until the first frame says otherwise
    rq_steps: tuple[float, ...] | None = None  # mean codec steps at each rq point
    floor_source: str = "codec"  # "content": calibrated on the scenario's frames
    # row k: mean squared error (pixels in [0, 1]) of source frame k against frames
    # k-1 .. k-A; only for a policy that plans with the content's future (``optimal``)
    motion_mse: tuple[tuple[float, ...], ...] | None = None
    # per frame: the smallest budget it codes at (-1: not even at max_bpp); same condition
    frame_floors: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Calibration:
    """What ``FrameEncoder._calibrate`` measured on the content."""

    rq: RateQualityModel | None
    floor_bits: int | None  # None: some calibration frame did not code at max_bits
    steps: tuple[float, ...] | None  # mean steps at each rq point (None without rq)


@dataclass
class EncodedFrame:
    """One frame, encoded and packed: the wire bytes and what it cost."""

    frame: bytes
    payload_bytes: int
    header_bytes: int
    skipped: bool
    reason: str
    steps: int
    encode_ms: float  # measured here
    encode_charged_s: float  # virtual time charged (profile or measured)
    send_s: float  # start + charged: when the frame is ready to leave

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncodedFrame:
        """From a worker reply (which may carry extra keys, such as its ``op``)."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


def scenario_content(scenario: Scenario, scenario_dir: str) -> FrameSource:
    """The scenario's frames (generated content: the reference of ``content.model``, the
    shipped pixel DDPM by default)."""
    c = scenario.content
    # The schema fills defaults for every source's keys; pass on only this source's.
    spec = {k: v for k, v in c.model_dump(exclude_none=True).items() if k in SPEC_KEYS[c.source]}
    reference = None
    if c.source == "generated":
        spec.setdefault("seed", scenario.seed)
        model = content_model_path(c.model, scenario_dir)
        reference = functools.partial(_reference_image, model=model, steps=c.model_steps)
    return make_source(spec, scenario.frame.width, scenario.frame.height, scenario_dir,
                       reference=reference)


def content_model_path(model: str | None, scenario_dir: str) -> str | None:
    """``content.model`` as an absolute path: the scenario's folder first, then the cwd
    (the order every scenario path resolves in; load_scenario has checked it exists)."""
    if model is None:
        return None
    found = resolve_in(model, Path(scenario_dir))
    return str((found or Path(model).expanduser()).resolve())


def _reference_image(request: GenerationRequest, shape: tuple[int, int],
                     model: str | None = None, steps: int = 100) -> np.ndarray:
    """The generated content's reference: the generator's full-step sample (imported on
    first use: torch models cost nothing until a scenario generates)."""
    from diffstream.codecs.badiff.samplers import reference_image

    return np.asarray(reference_image(request, shape, model, steps))


class FrameEncoder:
    def __init__(self, scenario: Scenario, scenario_dir: str) -> None:
        self.scenario = scenario
        self.content = scenario_content(scenario, scenario_dir)
        self.compute = ComputeModel(scenario.compute)
        self.codecs: dict[str, Any] = {}
        self.codec_names: dict[str, str] = {}
        self.charges: dict[str, CodecCharge] = {}
        self.shape = (scenario.frame.height, scenario.frame.width)

    def open_arm(self, arm: str, codec_name: str, options: dict[str, Any],
                 calibrate: bool = True, motion_ages: int = 0) -> ArmInfo:
        codec = create_codec(codec_name, **options)
        self.codecs[arm] = codec
        self.codec_names[arm] = codec_name
        self.charges[arm] = codec_charge(self.compute, codec_name, options, codec)
        cal = self._calibrate(codec) if calibrate else None
        rq = cal.rq if cal else None
        floor = cal.floor_bits if cal else None
        return ArmInfo(min_bits=int(codec.min_bits(self.shape)) if floor is None else floor,
                       progressive=capabilities_of(codec).progressive,
                       rq=None if rq is None else (tuple(rq.bpp), tuple(rq.quality_db)),
                       header_bytes=self._typical_header(arm, codec_name),
                       rq_steps=cal.steps if cal else None,
                       floor_source="codec" if floor is None else "content",
                       motion_mse=self.motion_table(motion_ages) if motion_ages > 0 else None,
                       frame_floors=self.frame_floors(codec) if motion_ages > 0 else None)

    def frame_floors(self, codec: Any) -> tuple[int, ...] | None:
        """Each frame's own floor over the arm: the codec's ``floor_bits(image)`` when it has
        one (the classic codecs: one encode), else by bisection to a byte (at most
        ``FRAME_FLOOR_STEPS`` encodes a frame): the content's future, for ``optimal``. None
        for generated content (as ``motion_table``)."""
        if isinstance(self.content, GeneratedSequence):
            return None
        max_bits = int(self.scenario.max_bpp * self.shape[0] * self.shape[1])
        own = getattr(codec, "floor_bits", None)  # the codec's exact answer, when it has one
        out = []
        for k in range(self.scenario.frames_per_arm):
            image = self.content.frame(k)  # rendered once for every probe of this frame
            if callable(own):
                bits = int(own(image))
                out.append(bits if bits <= max_bits else -1)
                continue
            if codec.encode(image, max_bits).skipped:
                out.append(-1)
                continue
            lo, hi = 0, max_bits  # lo skips (0 always does), hi codes
            for _ in range(FRAME_FLOOR_STEPS):
                if hi - lo <= 8:
                    break
                mid = (lo + hi) // 2
                if codec.encode(image, mid).skipped:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
        return tuple(out)

    def motion_table(self, ages: int) -> tuple[tuple[float, ...], ...] | None:
        """The content's motion over the arm: row ``k`` holds the mean squared error (pixels
        in [0, 1]) of frame ``k`` against frames ``k - 1 .. k - ages`` (before frame 0:
        against frame 0). A stale slot's quality follows from it (``optimal``). None for
        generated content: its frames are model samples, too costly to render twice."""
        if isinstance(self.content, GeneratedSequence):
            return None
        n = self.scenario.frames_per_arm
        recent: list[np.ndarray] = []
        rows = []
        for k in range(n):
            f = self.content.frame(k).astype(np.float32) / 255.0
            rows.append(tuple(float(np.mean((f - recent[-a] if a <= len(recent)
                                             else f - recent[0]) ** 2)) if recent else 0.0
                              for a in range(1, ages + 1)))
            recent.append(f)
            if len(recent) > ages:
                recent.pop(0)
        return tuple(rows)

    def _typical_header(self, arm: str, codec: str) -> int:
        """A header size to plan the first frame with (every later frame brings its own)."""
        h = FrameHeader(seq=0, arm=arm_tag(arm), codec=codec, budget_bits=10**6, payload_len=0,
                        payload_crc32=0, capture_s=0.0, send_s=0.0, shape=self.shape,
                        skipped=False, steps=1, meta={"q": 50, "probes": 7})
        return header_size(h)

    def _calibrate(self, codec: Any) -> Calibration:
        """Measure the codec on a few frames spread over the scenario's own content (for
        MPC): the floor, the rate-quality curve and the codec steps at each budget.

        Floor: for each calibration frame the smallest budget it codes at, bracketed by the
        budget grid and narrowed by ``FLOOR_BISECTIONS`` halvings; the content floor is the
        largest of them (every calibration frame codes at it), and it joins the grid, so
        the curve has a measured point at the floor. This replaces the codec's
        ``min_bits(shape)`` (a synthetic pink-noise frame) for the arm. Curve: None when
        fewer than two budgets decode."""
        from diffstream.metrics.quality import QualityScorer

        scorer = QualityScorer()
        metric = "psnr_db" if self.scenario.qoe.metric == "psnr" else "ssim_db"
        n = len(self.content)
        ks = sorted({0, n // 3, (2 * n) // 3})
        frames = {k: self.content.frame(k) for k in ks}
        pixels = self.shape[0] * self.shape[1]
        max_bits = int(self.scenario.max_bpp * pixels)
        coded: dict[tuple[int, int], Encoded] = {}  # (frame, budget) -> encoded

        def code(k: int, budget: int) -> Encoded:
            if (k, budget) not in coded:
                coded[(k, budget)] = self._code(codec, k, budget)
            return coded[(k, budget)]

        grid = [int(bpp * pixels) for bpp in CALIBRATION_BPP if bpp <= self.scenario.max_bpp]
        for budget in grid:
            for k in ks:
                code(k, budget)
        floor = self._content_floor(ks, grid, code, max_bits)
        if floor is not None and floor not in grid:
            grid = sorted([*grid, floor])
            for k in ks:
                code(k, floor)
        xs: list[float] = []
        ys: list[float] = []
        steps: list[float] = []
        for budget in grid:
            encs = [code(k, budget) for k in ks]
            if any(e.skipped for e in encs):
                continue  # only budgets that fit every calibration frame
            x = float(np.mean([e.bits for e in encs])) / pixels
            if xs and x <= xs[-1]:
                continue
            qs = [scorer.score(frames[k], codec.decode(e.payload, e.meta, self.shape))[metric]
                  for k, e in zip(ks, encs, strict=True)]
            xs.append(x)
            ys.append(float(np.mean(qs)))
            steps.append(float(np.mean([e.steps for e in encs])))
        rq = RateQualityModel(tuple(xs), tuple(ys)) if len(xs) >= 2 else None
        return Calibration(rq=rq, floor_bits=floor, steps=tuple(steps) if rq else None)

    @staticmethod
    def _content_floor(ks: list[int], grid: list[int], code: Callable[[int, int], Encoded],
                       max_bits: int) -> int | None:
        """The smallest budget at which every calibration frame codes (see ``_calibrate``);
        None when some frame does not code even at ``max_bits``."""
        floors = []
        for k in ks:
            lo, hi = 0, None  # lo skips (0 always does), hi codes
            for budget in grid:
                if code(k, budget).skipped:
                    lo = budget
                elif hi is None:
                    hi = budget
            if hi is None:
                if max_bits <= lo or code(k, max_bits).skipped:
                    return None
                hi = max_bits
            for _ in range(FLOOR_BISECTIONS):
                if hi - lo <= 8:  # a byte: payloads are whole bytes
                    break
                mid = (lo + hi) // 2
                if code(k, mid).skipped:
                    lo = mid
                else:
                    hi = mid
            floors.append(hi)
        return max(floors)

    def _code(self, codec: Any, k: int, budget_bits: int) -> Encoded:
        """Frame k under the budget: generated from its request by a generative codec,
        otherwise the content's image encoded (a classic codec on generated content codes
        the reference sample: the Cascade baseline)."""
        if isinstance(self.content, GeneratedSequence) and capabilities_of(codec).generative:
            return codec.generate(self.content.request(k), budget_bits, self.shape)
        return codec.encode(self.content.frame(k), budget_bits)

    def encode(self, arm: str, seq: int, budget_bits: int, capture_s: float,
               start_s: float) -> EncodedFrame:
        """Encode frame ``seq`` of ``arm`` under the budget; the codec starts at ``start_s``."""
        codec, name = self.codecs[arm], self.codec_names[arm]
        t0 = time.perf_counter()
        enc = self._code(codec, seq, int(budget_bits))
        measured = time.perf_counter() - t0
        charged = self.charges[arm].encode_s(measured, enc.steps)
        send_s = float(start_s) + charged
        header = FrameHeader(seq=seq, arm=arm_tag(arm), codec=name, budget_bits=int(budget_bits),
                             payload_len=0, payload_crc32=0, capture_s=float(capture_s),
                             send_s=send_s, shape=self.shape, skipped=enc.skipped,
                             steps=int(enc.steps), meta=enc.meta)
        frame = pack_frame(header, enc.payload)
        if enc.skipped:
            log.info("arm %s frame %d skipped: %s", arm, seq, enc.reason)
        return EncodedFrame(frame=frame, payload_bytes=len(enc.payload),
                            header_bytes=len(frame) - len(enc.payload), skipped=enc.skipped,
                            reason=enc.reason, steps=int(enc.steps),
                            encode_ms=measured * 1000.0, encode_charged_s=charged,
                            send_s=send_s)
