"""The receiver's decisions, shared by the simulator's receiver worker and the live receiver:
reassemble the packets that arrived, unpack and check the wire frame, decode it (a
progressive codec decodes the prefix that beat the deadline), decide what the viewer sees
(``playout``) and score it against the original frame.

Input is an ``ArrivedFrame`` (the packets with their arrival times, whoever delivered them);
output is one ``Outcome`` per frame whose slot is decided, in sequence order. The receiver
never dies on a bad frame: every frame is handled inside a guard that turns any failure
into a counted, logged error outcome.

``network_only=True`` (network-only runs) has no codec and no scoring: a frame is "decoded"
when it arrived whole and its wire frame checks out, at its last packet's arrival.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffstream.codecs import CodecError, create_codec
from diffstream.codecs.base import capabilities_of
from diffstream.content.sources import FrameSource, GeneratedSequence
from diffstream.pipeline.compute import ComputeModel
from diffstream.pipeline.costs import codec_charge
from diffstream.pipeline.encoder import scenario_content
from diffstream.pipeline.playout import InteractivePlayout, PlaybackBuffer, Slot
from diffstream.pipeline.records import Outcome
from diffstream.scenario.schema import Scenario
from diffstream.transport.packets import reassemble
from diffstream.transport.wire import WireError, arm_tag, unpack_frame

log = logging.getLogger("diffstream.receiver")

GREY = 128  # what the viewer sees before the first frame arrives


@dataclass
class ArrivedFrame:
    """The packets of one frame that reached the receiver: (offset, bytes, arrival_s)."""

    seq: int
    arm: str
    frame_len: int
    chunks: Sequence[tuple[int, bytes, float]]
    deadline_s: float | None  # interactive: capture + target latency; playback: None


@dataclass
class _Decoded:
    """One frame between decode and its playout decision."""

    seq: int
    deadline_s: float | None
    image: np.ndarray | None = None
    arrived_s: float | None = None  # a frame that arrived holds its playback slot
    fields: dict[str, Any] = field(default_factory=lambda: {
        "decoded": False, "partial": False, "prefix_step": None, "decode_ms": 0.0,
        "decode_charged_s": 0.0, "decode_done_s": None, "error": ""})


class ReceiverCore:
    def __init__(self, scenario: Scenario, scenario_dir: str | None = None, *,
                 network_only: bool = False) -> None:
        self.scenario = scenario
        self.network_only = network_only
        self.content: FrameSource | None = None
        self.scorer: Any = None
        if not network_only:
            from diffstream.metrics.quality import QualityScorer

            self.content = scenario_content(scenario, scenario_dir or ".")
            self.scorer = QualityScorer()
        self.compute = ComputeModel(scenario.compute)
        self.shape = (scenario.frame.height, scenario.frame.width)
        self.interactive = scenario.mode.kind == "interactive"
        self.malformed = 0
        self.open_arm("", "", {})

    def open_arm(self, arm: str, codec: str, options: dict[str, Any]) -> None:
        self.arm, self.codec_name = arm, codec
        self.codec = create_codec(codec, **options) if codec and not self.network_only else None
        self.progressive = self.codec is not None and capabilities_of(self.codec).progressive
        self.charge = codec_charge(self.compute, codec if self.codec is not None else "",
                                   options, self.codec)
        self.last_image = np.full((*self.shape, 3), GREY, np.uint8)
        self.playout: InteractivePlayout | PlaybackBuffer
        if self.interactive:
            self.playout = InteractivePlayout()
        else:
            self.playout = PlaybackBuffer(self.scenario.frame.fps, self.scenario.mode.startup_s)
        self.pending: list[_Decoded] = []  # decoded, waiting for a playback decision
        self.malformed = 0
        if codec:
            self._warm_references()

    def _warm_references(self) -> None:
        """Generated content: compute the reference images this arm scores against now, once
        per process (the plain DDPM's 100-step sample, seconds each on a CPU), not when a
        frame needs one. The simulator's results do not depend on it; live, a frame whose
        scoring waits for a reference holds up the frames behind it, so they arrive late."""
        if not isinstance(self.content, GeneratedSequence):
            return
        n = min(len(self.content), self.scenario.frames_per_arm)
        log.info("computing %d reference images of the generated content", n)
        for k in range(n):
            self.content.frame(k)

    # ------------------------------------------------------------------ frames
    def on_frame(self, f: ArrivedFrame) -> list[tuple[int, Outcome]]:
        """Handle one frame; returns the (seq, outcome) pairs whose slots it decides."""
        if f.arm != self.arm:
            self.malformed += 1
            log.warning("frame for arm %r while %r is active: dropped", f.arm, self.arm)
            return []
        if self.interactive and f.deadline_s is None:
            self.malformed += 1
            log.warning("arm %s frame %d: interactive frame without a deadline", f.arm, f.seq)
            return []
        d = _Decoded(f.seq, f.deadline_s)
        try:
            d.image = self._decode(f, d)
        except (WireError, CodecError, ValueError, KeyError, TypeError) as exc:
            self.malformed += 1
            d.fields["error"] = f"{type(exc).__name__}: {exc}"
            log.warning("arm %s frame %d: %s", f.arm, f.seq, d.fields["error"])
        except Exception as exc:  # a decoder bug must not take the receiver down
            self.malformed += 1
            d.fields["error"] = f"{type(exc).__name__}: {exc}"
            log.error("arm %s frame %d: unexpected\n%s", f.arm, f.seq, traceback.format_exc())
        return self._decide(d)

    def _decode(self, f: ArrivedFrame, d: _Decoded) -> np.ndarray | None:
        usable = f.chunks
        if self.progressive and f.deadline_s is not None:
            # a frame cut off by its deadline still shows the prefix that arrived in time
            est = self.charge.decode_s(0.0)
            usable = [c for c in f.chunks if float(c[2]) <= float(f.deadline_s) - est]
        if not usable:
            return None
        data, complete = reassemble(int(f.frame_len), ((int(o), bytes(b)) for o, b, _ in usable))
        if not data or (not complete and not self.progressive):
            return None  # packet loss, not a malformed frame: nothing to decode
        arrived = max(float(c[2]) for c in usable if int(c[0]) < len(data))
        try:
            frame = unpack_frame(data, allow_prefix=self.progressive)
        except WireError as exc:
            if complete or exc.kind != "truncated":
                raise
            return None  # a prefix that ends inside the header: nothing arrived to decode
        if self.codec is None:  # network only: a whole, valid frame counts as decoded
            d.fields.update(decoded=True, decode_done_s=arrived)
            return None
        h = frame.header
        if h.seq != f.seq or h.arm != arm_tag(self.arm):
            raise ValueError(f"header says arm tag {h.arm!r} seq {h.seq}; the envelope says "
                             f"arm {self.arm!r} (tag {arm_tag(self.arm)!r}) seq {f.seq}")
        if tuple(h.shape) != self.shape:
            raise ValueError(f"frame shape {tuple(h.shape)} != scenario shape {self.shape}")
        d.arrived_s = arrived
        if h.skipped:
            return None
        r = d.fields
        if self.progressive:
            r["prefix_step"] = int(self.codec.prefix_steps(frame.payload, h.meta))
            if r["prefix_step"] == 0 and not frame.complete:
                return None  # the prefix holds no whole step yet: late, not malformed
        t0 = time.perf_counter()
        image = self.codec.decode(frame.payload, h.meta, self.shape)
        measured = time.perf_counter() - t0
        if image.shape != (*self.shape, 3):
            raise CodecError(f"decoder returned shape {image.shape}")
        steps = r["prefix_step"] if r["prefix_step"] is not None else h.steps
        charged = self.charge.decode_s(measured, steps)
        r.update(decoded=True, partial=not frame.complete, decode_ms=measured * 1000.0,
                 decode_charged_s=charged, decode_done_s=arrived + charged)
        return image

    # ------------------------------------------------------------------ playout
    def _decide(self, d: _Decoded) -> list[tuple[int, Outcome]]:
        if isinstance(self.playout, InteractivePlayout):
            assert d.deadline_s is not None
            return [self._finish(d, self.playout.on_frame(d.fields["decode_done_s"],
                                                          float(d.deadline_s)))]
        self.pending.append(d)
        decoded = bool(d.fields["decoded"])
        ready = d.fields["decode_done_s"] if decoded else d.arrived_s
        return [self._finish(self.pending.pop(0), slot)
                for slot in self.playout.on_frame(ready, showable=decoded)]

    def flush(self) -> list[tuple[int, Outcome]]:
        """End of the arm: playback frames still waiting for playback to start."""
        if isinstance(self.playout, PlaybackBuffer):
            return [self._finish(self.pending.pop(0), s) for s in self.playout.flush()]
        return []

    def _finish(self, d: _Decoded, slot: Slot) -> tuple[int, Outcome]:
        if slot.shown and d.image is not None:
            self.last_image = d.image
        quality: dict[str, float | None] = {"psnr_db": None, "ms_ssim": None, "ssim": None,
                                            "ssim_db": None}
        if self.scorer is not None:
            assert self.content is not None
            quality = self.scorer.score(self.content.frame(d.seq), self.last_image)
        met = slot.shown if d.deadline_s is not None else slot.stall_s == 0 and slot.shown
        return d.seq, Outcome(
            **d.fields, shown=slot.shown, display_s=slot.display_s,
            deadline_met=met, stall=(not slot.shown) or slot.stall_s > 0,
            stall_s=slot.stall_s, psnr_db=_num(quality["psnr_db"]),
            ms_ssim=_num(quality["ms_ssim"]), ssim=_num(quality["ssim"]),
            ssim_db=_num(quality["ssim_db"]))

    def score_unseen(self, seq: int, deadline_s: float | None) -> Outcome | None:
        """A frame that never arrived, in its slot (the viewer kept the last image); None
        while a playback slot is still undecided."""
        out = self.on_frame(ArrivedFrame(seq, self.arm, 0, [], deadline_s))
        return out[0][1] if out else None


def _num(x: Any) -> float | None:
    """A score for the record: NaN (no score) becomes None; inf (identical images) stays."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x
