"""The per-frame record (one JSONL line per frame per arm) and the per-arm summary.

Everything a plot or a table needs is in ``FrameRecord``, so any figure can be regenerated
from ``frames.jsonl`` alone. Times are seconds of virtual (simulated) time from the start of
the arm; ``None`` means "did not happen" (e.g. no packet arrived).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

# Columns fully determined by scenario + seed (with a compute profile): two runs must agree
# on them exactly. Quality and measured-time columns are excluded.
NETWORK_COLUMNS: tuple[str, ...] = (
    "arm", "seq", "capture_s", "send_s", "deadline_s", "budget_bits", "payload_bytes",
    "wire_bytes", "packets", "packets_dropped", "packets_lost", "first_arrival_s",
    "last_arrival_s", "delivered_bytes", "complete", "capacity_bps", "throughput_est_bps",
    "queue_bytes", "throughput_pred_bps", "throughput_bps",
)


@dataclass
class SenderHalf:
    """What the sender did with one frame (the sender's half of its ``FrameRecord``).

    The simulator's coordinator builds it from the policy, the encoder and the link; live, the
    sender builds it the same way (``pipeline.sender_core``) and sends it with the frame, so
    the receiver's log holds it too. Field meanings: ``FrameRecord``."""

    arm: str
    codec: str
    policy: str
    capture_s: float
    send_s: float
    deadline_s: float | None
    budget_bits: int
    payload_bytes: int
    header_bytes: int
    wire_bytes: int
    packets: int
    bpp: float
    skipped: bool
    skip_reason: str
    codec_steps: int
    encode_ms: float
    encode_charged_s: float
    throughput_est_bps: float | None
    capacity_bps: float | None  # None: not known (live without shaping); NaN in the record
    queue_bytes: float
    packets_dropped: int
    packets_lost: int
    throughput_pred_bps: float | None = None  # the policy's own prediction (None: it has none)


@dataclass
class Arrival:
    """What reached the receiver of one frame (from the link model, or the real socket)."""

    first_arrival_s: float | None
    last_arrival_s: float | None
    delivered_bytes: int
    complete: bool
    throughput_bps: float | None = None  # the receiver's throughput sample of this frame

    @classmethod
    def nothing(cls) -> Arrival:
        return cls(None, None, 0, False)


@dataclass
class Outcome:
    """What the receiver made of one frame: decode, playout decision and the viewer's score
    (``pipeline.receiver_core.ReceiverCore``, in both modes)."""

    decoded: bool
    partial: bool
    prefix_step: int | None
    decode_ms: float
    decode_charged_s: float
    decode_done_s: float | None
    shown: bool
    display_s: float | None
    deadline_met: bool
    stall: bool
    stall_s: float
    psnr_db: float | None
    ms_ssim: float | None
    ssim: float | None
    ssim_db: float | None
    error: str

    @classmethod
    def missing(cls, error: str, *, stall: bool = True) -> Outcome:
        """A frame the receiver never reported on: not decoded, not shown, not scored."""
        return cls(False, False, None, 0.0, 0.0, None, False, None, False, stall, 0.0,
                   None, None, None, None, error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(**{f: data[f] for f in OUTCOME_FIELDS})


SENDER_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SenderHalf))
ARRIVAL_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Arrival))
OUTCOME_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Outcome))
RECEIVER_FIELDS: tuple[str, ...] = ARRIVAL_FIELDS + OUTCOME_FIELDS


@dataclass
class FrameRecord:
    # identity
    arm: str
    seq: int
    codec: str
    policy: str
    # sender side
    capture_s: float
    send_s: float  # capture + charged encode time: when the frame enters the link queue
    deadline_s: float | None  # interactive: capture + target latency; playback: None
    budget_bits: int
    payload_bytes: int
    header_bytes: int  # wire-frame header (meta travels here)
    wire_bytes: int  # on-link bytes of all packets (frame + per-packet overhead)
    packets: int
    bpp: float  # payload bits / pixels
    skipped: bool  # the codec could not fit the budget and sent a header-only frame
    skip_reason: str
    codec_steps: int
    encode_ms: float  # measured wall time of codec.encode on this machine
    encode_charged_s: float  # virtual time charged (measured or device profile)
    throughput_est_bps: float | None  # the sender's estimate when it chose the budget
    capacity_bps: float  # true link capacity (share-scaled) over [capture, capture + 1/fps)
    queue_bytes: float  # link queue occupancy just before this frame was enqueued
    # network
    packets_dropped: int  # drop-tail at the queue
    packets_lost: int  # random loss on the link
    first_arrival_s: float | None
    last_arrival_s: float | None
    delivered_bytes: int  # on-link bytes that arrived
    complete: bool  # every packet arrived
    # receiver side
    decoded: bool  # the receiver produced an image from this frame (full or prefix)
    partial: bool  # decoded from a prefix (progressive codecs)
    prefix_step: int | None  # progressive: last step decoded
    decode_ms: float
    decode_charged_s: float
    decode_done_s: float | None
    shown: bool  # displayed in its slot (interactive: by its deadline)
    display_s: float | None
    latency_s: float | None  # display - capture, for shown frames
    deadline_met: bool
    stall: bool  # the viewer saw a stale image in this frame's slot
    stall_s: float  # playback: rebuffer time charged before this frame played
    # what the viewer saw in this slot, scored against the original frame
    psnr_db: float | None
    ms_ssim: float | None
    ssim: float | None
    ssim_db: float | None
    error: str  # receiver-side error (malformed frame, decode failure), "" if none
    # prediction error (last, with defaults: older frames.jsonl files still load)
    throughput_pred_bps: float | None = None  # the policy's predicted throughput at decision
    throughput_bps: float | None = None  # the receiver's throughput sample of this frame
    # (busy-time rate, control.feedback.ThroughputEstimator; None: no sample)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def compose(cls, seq: int, tx: SenderHalf, arrival: Arrival, outcome: Outcome
                ) -> FrameRecord:
        """The record both modes write: the sender's half, what arrived, what was made of it."""
        sender = asdict(tx)
        if sender["capacity_bps"] is None:
            sender["capacity_bps"] = math.nan
        display = outcome.display_s
        return cls(seq=seq, **sender, **asdict(arrival), **asdict(outcome),
                   latency_s=None if display is None else display - tx.capture_s)

    def sender_half(self) -> SenderHalf:
        return SenderHalf(**{f: getattr(self, f) for f in SENDER_FIELDS})

    def arrival(self) -> Arrival:
        return Arrival(**{f: getattr(self, f) for f in ARRIVAL_FIELDS})

    def outcome(self) -> Outcome:
        return Outcome(**{f: getattr(self, f) for f in OUTCOME_FIELDS})


# The record is exactly its halves plus the frame number and the derived latency.
assert {f.name for f in fields(FrameRecord)} == {
    "seq", "latency_s", *SENDER_FIELDS, *RECEIVER_FIELDS}, "FrameRecord and its halves disagree"


@dataclass
class ArmSummary:
    arm: str
    codec: str
    policy: str
    frames: int
    shown_pct: float
    mean_psnr_db: float
    mean_ms_ssim: float
    mean_ssim_db: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    deadline_miss_pct: float
    freezes: int  # WebRTC freeze count (interactive) / rebuffer events (playback)
    freeze_s: float  # total freeze / rebuffer time
    skipped: int
    partial: int  # shown from a prefix that beat the deadline (progressive codecs: DiffC)
    mean_bpp: float
    delivered_kbps: float
    utilisation: float  # delivered bits / capacity offered while the sender had data queued
    qoe: float  # the scenario's preset (qoe_preset); every preset below (metrics.qoe_presets)
    qoe_preset: str
    qoe_diffstream: float
    qoe_pensieve_lin: float
    qoe_pensieve_log: float
    qoe_pensieve_hd: float
    qoe_puffer: float
    rebuffer_ratio: float  # stall time / (play time + stall time)
    stalled_pct: float  # % of the display timeline frozen or paused (WebRTC rules)
    freeze_count: int  # WebRTC freezeCount on the display timeline, both modes (no pauses)
    total_freezes_duration_s: float
    pauses: int  # WebRTC pauseCount: display gaps > 5 s (not freezes)
    total_pauses_duration_s: float
    # throughput prediction error, Sabre's over/under split (metrics.prediction)
    pred_frames: int = 0  # frames with a prediction and a measured sample
    pred_over_pct: float = math.nan  # % of them where prediction > measured throughput
    pred_over_err: float = math.nan  # mean (pred - measured) / measured over those
    pred_under_pct: float = math.nan
    pred_under_err: float = math.nan  # mean (measured - pred) / measured

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
