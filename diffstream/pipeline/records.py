"""The per-frame record (one JSONL line per frame per arm) and the per-arm summary.

Everything a plot or a table needs is in ``FrameRecord``, so any figure can be regenerated
from ``frames.jsonl`` alone. Times are seconds of virtual (simulated) time from the start of
the arm; ``None`` means "did not happen" (e.g. no packet arrived).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

# Columns fully determined by scenario + seed (with a compute profile): two runs must agree
# on them exactly. Quality and measured-time columns are excluded.
NETWORK_COLUMNS: tuple[str, ...] = (
    "arm", "seq", "capture_s", "send_s", "deadline_s", "budget_bits", "payload_bytes",
    "wire_bytes", "packets", "packets_dropped", "packets_lost", "first_arrival_s",
    "last_arrival_s", "delivered_bytes", "complete", "capacity_bps", "throughput_est_bps",
    "queue_bytes",
)


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


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
    qoe: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
