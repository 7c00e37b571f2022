"""The greedy clairvoyant bound: the largest budget the real future link delivers in time.

It reads ``obs.future`` (the true capacity, queue and delay), which no deployable sender has.
It is *greedy*, not optimal: each frame takes everything the link can deliver in time, which
can starve the frames after it and makes its quality swing. ``optimal`` (``optimal.py``) is
the whole-arm optimum by dynamic programming, whose plans include this one's. It ignores loss
(a lost packet is bad luck, not a budget decision) and assumes the encode and decode times in
the observation are exact.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from diffstream.control.policies.base import (
    Observation,
    PolicyModel,
    clamp_bits,
    payload_bits_for_wire_budget,
    time_to_deadline_s,
)


class OraclePolicy(PolicyModel):
    """Greedy clairvoyant bound: the largest ``b`` whose frame, queued FIFO behind the
    current backlog, clears in time.

    The frame enters the link at ``t0 = now + encode_s`` and its last byte must clear by
    ``t1 = now + time_to_deadline - delay_s - decode_s`` (``deadline_s`` interactive,
    ``buffer_s`` playback). For a FIFO with ``backlog`` bytes queued at ``now`` that holds
    exactly when both
    ``backlog + wire(b) <= capacity(now, t1)`` (the link drains the backlog, also while the
    frame is being encoded, then the frame) and ``wire(b) <= capacity(t0, t1)`` (the frame
    cannot use the link before it exists). Capacity is monotone in the window, so the on-link
    byte budget is the smaller right-hand side; it is inverted to payload bits by bisection.
    """

    needs_future: ClassVar[bool] = True

    kind: Literal["oracle"] = "oracle"

    @property
    def label(self) -> str:
        return "oracle(greedy)"

    def wire_budget_bytes(self, obs: Observation) -> float:
        """On-link bytes this frame may occupy and still be displayed in time."""
        future = obs.future
        if future is None:
            raise ValueError(
                "the oracle policy needs obs.future (the link's true capacity), which only a "
                "simulated session provides; use another policy for live runs"
            )
        t0 = obs.now_s + obs.encode_s
        t1 = obs.now_s + time_to_deadline_s(obs) - future.delay_s - obs.decode_s
        if t1 <= t0:
            return -1.0  # late even if sent instantly: nothing fits
        return min(
            future.capacity_bytes(obs.now_s, t1) - future.backlog_bytes,
            future.capacity_bytes(t0, t1),
        )

    def budget_bits(self, obs: Observation) -> int:
        return clamp_bits(payload_bits_for_wire_budget(obs, self.wire_budget_bytes(obs)), obs)
