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
from dataclasses import fields
from typing import Any

from diffstream.pipeline.records import (
    ARRIVAL_FIELDS,
    OUTCOME_FIELDS,
    SENDER_FIELDS,
    Arrival,
    FrameRecord,
    Outcome,
    SenderHalf,
)

# what a REPORT carries beside the receiver's half of the record
REPORT_EXTRAS: dict[str, Any] = {"throughput_bps": None, "buffer_s": 0.0,
                                 "offset_err_s": None, "rtt_s": None}


def flat(half: SenderHalf | Arrival | Outcome) -> dict[str, Any]:
    """``dataclasses.asdict`` of a record half (all its fields are plain values), without
    asdict's recursive deep copy: a tenth of its cost, paid per frame on both sides."""
    names = _FIELDS.get(type(half))
    if names is None:  # a subclass: its own fields
        names = tuple(f.name for f in fields(half))
    return {name: getattr(half, name) for name in names}


_FIELDS: dict[type, tuple[str, ...]] = {SenderHalf: SENDER_FIELDS, Arrival: ARRIVAL_FIELDS,
                                        Outcome: OUTCOME_FIELDS}


def sender_half_of(info: dict[str, Any]) -> SenderHalf:
    """The sender half from a FRAME body or a journal entry (extra keys ignored)."""
    return SenderHalf(**{k: info[k] for k in SENDER_FIELDS})


def record_arrival(rx: dict[str, Any]) -> Arrival:
    return Arrival(**{k: rx[k] for k in ARRIVAL_FIELDS})


def make_record(seq: int, info: dict[str, Any], rx: dict[str, Any]) -> FrameRecord:
    """The per-frame record both sides write (``capacity_bps`` None -> NaN: not shaped)."""
    return FrameRecord.compose(seq, sender_half_of(info), record_arrival(rx),
                               Outcome(**{k: rx[k] for k in OUTCOME_FIELDS}))


def report_body(arrival: Arrival, outcome: Outcome, **extras: Any) -> dict[str, Any]:
    """A REPORT body: the receiver's half of the record plus the delivery-report fields."""
    unknown = set(extras) - set(REPORT_EXTRAS)
    if unknown:
        raise TypeError(f"not report fields: {sorted(unknown)}")
    # the defaults go first: a replayed record's own throughput sample (an Arrival field)
    # must not be overwritten by the extras' None
    return {**REPORT_EXTRAS, **flat(arrival), **flat(outcome), **extras}


def lost_rx(error: str, *, stall: bool = True) -> dict[str, Any]:
    """Receiver half for a frame the receiver never reported on."""
    return report_body(Arrival.nothing(), Outcome.missing(error, stall=stall))


def unseen_info(arm: str, codec: str, policy: str, capture_s: float,
                target_latency_s: float) -> dict[str, Any]:
    """Sender half, as far as the receiver can know it, of a frame that never arrived."""
    tx = SenderHalf(
        arm=arm, codec=codec, policy=policy, capture_s=capture_s, send_s=capture_s,
        deadline_s=capture_s + target_latency_s, budget_bits=0, payload_bytes=0,
        header_bytes=0, wire_bytes=0, packets=1, bpp=0.0, skipped=False, skip_reason="",
        codec_steps=0, encode_ms=0.0, encode_charged_s=0.0, throughput_est_bps=None,
        capacity_bps=None, queue_bytes=0.0, packets_dropped=0, packets_lost=0)
    return {**flat(tx), "frame_len": 0}


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
