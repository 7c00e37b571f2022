"""Packet groups and the deltas between them (draft-ietf-rmcat-gcc-02 sections 5.1-5.2; libwebrtc
``modules/congestion_controller/goog_cc/inter_arrival_delta.cc``).

A group is the packets sent within ``group_length_s`` of the group's first send time, plus
any packet that arrives in a burst right behind the group (the "burst" rule below). When the
first packet of a later group arrives, the previous group is complete and the deltas between
it and the group before are emitted: send delta (last send times), arrival delta (last
arrival times) and size delta. So a group's delta comes out one group late, as in libwebrtc.

diffstream feeds one "packet" per frame (its send time, last arrival and delivered bytes):
a frame's packets leave the sender in one burst, which is exactly one group, and the reports
carry only the first and last arrival (``DeliveryReport``), not per-packet times.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP_LENGTH_S = 0.005
"""Send-time span of one group: ``kTimestampGroupLengthMs = 5`` (delay_based_bwe.cc); the
draft's ``burst_time`` of 5 ms (sections 5.1-5.2)."""

BURST_DELTA_THRESHOLD_S = 0.005
"""``kBurstDeltaThreshold`` (inter_arrival_delta.cc): a packet arriving at most this long
after the group's last one, with a negative propagation delta, joins the group."""

MAX_BURST_DURATION_S = 0.100
"""``kMaxBurstDuration`` (inter_arrival_delta.cc): a burst spans at most this long."""

REORDERED_RESET_THRESHOLD = 3
"""``kReorderedResetThreshold`` (inter_arrival_delta.h): consecutive reordered groups before
a reset (the clocks are assumed to have jumped)."""

ARRIVAL_TIME_OFFSET_THRESHOLD_S = 3.0
"""``kArrivalTimeOffsetThreshold`` (inter_arrival_delta.h): an arrival delta this much larger
than the sender's own clock delta means the receiver's clock jumped: reset."""


@dataclass
class _Group:
    first_send_s: float
    send_s: float  # latest send time in the group
    first_arrival_s: float
    complete_s: float  # latest arrival in the group
    system_s: float  # sender clock when its last packet's feedback was processed
    size: int = 0


@dataclass(frozen=True)
class GroupDelta:
    """Deltas between two consecutive complete groups (newer minus older)."""

    send_delta_s: float
    arrival_delta_s: float
    size_delta: int


class InterArrival:
    def __init__(self, group_length_s: float = GROUP_LENGTH_S) -> None:
        self.group_length_s = group_length_s
        self._current: _Group | None = None
        self._prev: _Group | None = None
        self._reordered = 0
        self.resets = 0

    def reset(self) -> None:
        self._current = self._prev = None
        self._reordered = 0
        self.resets += 1

    def add(self, send_s: float, arrival_s: float, system_s: float,
            size: int) -> GroupDelta | None:
        """Feed one packet; the deltas of the group that just completed, if one did."""
        cur = self._current
        if cur is None:
            self._current = _Group(send_s, send_s, arrival_s, arrival_s, system_s, size)
            return None
        if send_s < cur.first_send_s:
            return None  # reordered packet: libwebrtc drops it
        delta = None
        if self._new_group(cur, send_s, arrival_s):
            prev = self._prev
            if prev is not None:
                send_delta = cur.send_s - prev.send_s
                arrival_delta = cur.complete_s - prev.complete_s
                system_delta = cur.system_s - prev.system_s
                if arrival_delta - system_delta >= ARRIVAL_TIME_OFFSET_THRESHOLD_S:
                    self.reset()
                    return None
                if arrival_delta < 0:  # the groups were reordered after arriving
                    self._reordered += 1
                    if self._reordered >= REORDERED_RESET_THRESHOLD:
                        self.reset()
                    return None
                self._reordered = 0
                delta = GroupDelta(send_delta, arrival_delta, cur.size - prev.size)
            self._prev = cur
            self._current = _Group(send_s, send_s, arrival_s, arrival_s, system_s, size)
            return delta
        cur.send_s = max(cur.send_s, send_s)
        cur.size += size
        cur.complete_s = arrival_s
        cur.system_s = system_s
        return None

    def _new_group(self, cur: _Group, send_s: float, arrival_s: float) -> bool:
        if self._belongs_to_burst(cur, send_s, arrival_s):
            return False
        return send_s - cur.first_send_s > self.group_length_s

    @staticmethod
    def _belongs_to_burst(cur: _Group, send_s: float, arrival_s: float) -> bool:
        arrival_delta = arrival_s - cur.complete_s
        send_delta = send_s - cur.send_s
        if send_delta == 0:
            return True
        propagation_delta = arrival_delta - send_delta
        return (propagation_delta < 0 and arrival_delta <= BURST_DELTA_THRESHOLD_S
                and arrival_s - cur.first_arrival_s < MAX_BURST_DURATION_S)
