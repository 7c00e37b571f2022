"""One FrameRecord from two halves: what the sender did and what the receiver saw.

The sender's half (``FRAME_INFO`` fields) travels with the frame; the receiver's half
(``REPORT_INFO`` fields) travels back in the report. Both sides build the record with the
same function from the same numbers, so their logs agree field for field wherever both
halves reached both sides. Where one half never arrived, the side that lacks it fills it
with what it can know and says why in ``error``:

- sender, no report (receiver down, partition, report lost): ``lost_rx`` - not decoded,
  not shown, no quality score;
- receiver, frame never arrived (it saw a later seq, or the sender re-synchronised):
  ``unseen_info`` - zero sizes and budget, capture time interpolated between its neighbours.
"""

from __future__ import annotations

import math
from typing import Any

from diffstream.live.protocol import FRAME_INFO, REPORT_INFO
from diffstream.pipeline.records import FrameRecord

SENDER_KEYS = tuple(k for k in FRAME_INFO if k != "frame_len")
RECEIVER_KEYS = ("first_arrival_s", "last_arrival_s", "delivered_bytes", "complete", "decoded",
                 "partial", "prefix_step", "decode_ms", "decode_charged_s", "decode_done_s",
                 "shown", "display_s", "deadline_met", "stall", "stall_s", "psnr_db",
                 "ms_ssim", "ssim", "ssim_db", "error")
assert set(RECEIVER_KEYS) <= set(REPORT_INFO)


def _float(v: Any) -> float:
    return math.nan if v is None else float(v)


def make_record(seq: int, info: dict[str, Any], rx: dict[str, Any]) -> FrameRecord:
    """The per-frame record both sides write (``capacity_bps`` None -> NaN: not shaped)."""
    sender = {k: info[k] for k in SENDER_KEYS}
    sender["capacity_bps"] = _float(sender["capacity_bps"])
    receiver = {k: rx[k] for k in RECEIVER_KEYS}
    display = receiver["display_s"]
    return FrameRecord(
        seq=seq, **sender, **receiver,
        latency_s=None if display is None else display - sender["capture_s"],
    )


def lost_rx(error: str, *, stall: bool = True) -> dict[str, Any]:
    """Receiver half for a frame the receiver never reported on."""
    return {
        "first_arrival_s": None, "last_arrival_s": None, "delivered_bytes": 0,
        "complete": False, "decoded": False, "partial": False, "prefix_step": None,
        "decode_ms": 0.0, "decode_charged_s": 0.0, "decode_done_s": None, "shown": False,
        "display_s": None, "deadline_met": False, "stall": stall, "stall_s": 0.0,
        "psnr_db": None, "ms_ssim": None, "ssim": None, "ssim_db": None, "error": error,
        "throughput_bps": None, "buffer_s": 0.0, "offset_err_s": None, "rtt_s": None,
    }


def unseen_info(arm: str, codec: str, policy: str, capture_s: float,
                target_latency_s: float) -> dict[str, Any]:
    """Sender half, as far as the receiver can know it, of a frame that never arrived."""
    return {
        "arm": arm, "codec": codec, "policy": policy, "capture_s": capture_s,
        "send_s": capture_s, "deadline_s": capture_s + target_latency_s, "budget_bits": 0,
        "payload_bytes": 0, "header_bytes": 0, "wire_bytes": 0, "packets": 1, "bpp": 0.0,
        "skipped": False, "skip_reason": "", "codec_steps": 0, "encode_ms": 0.0,
        "encode_charged_s": 0.0, "throughput_est_bps": None, "capacity_bps": None,
        "queue_bytes": 0.0, "packets_dropped": 0, "packets_lost": 0, "frame_len": 0,
    }


def fate(record: FrameRecord) -> str:
    """How the transport did: ``lost`` (never arrived), ``late`` (arrived after its deadline,
    or decoded too late to be shown) or ``delivered`` (arrived in time; a skipped or corrupt
    frame that arrived in time counts here, its record says what it held)."""
    if record.first_arrival_s is None:
        return "lost"
    if record.shown:
        return "delivered"
    arrived = record.last_arrival_s if record.last_arrival_s is not None else math.inf
    in_time = record.deadline_s is None or arrived <= record.deadline_s
    return "delivered" if in_time and not record.decoded else "late"
