"""The budget-controller contract: ``Policy.budget_bits(observation) -> int``.

Policies are pure: everything they may use arrives in the ``Observation`` (built by the
session from delayed delivery reports, exactly what a real sender would know), so each one is
unit-testable with hand-made observations. Only the clairvoyant policies (``oracle``,
``optimal``: ``needs_future``) get ``future``: a view of the link's true capacity and queue,
which no deployable policy can have.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict

# re-exported: the policies' throughput rules live with the other predictors
from diffstream.control.predictors import harmonic_mean
from diffstream.control.predictors import robust_throughput_bps as robust_throughput_bps
from diffstream.transport.packets import max_payload_bits


@dataclass(frozen=True)
class RateQualityModel:
    """The codec's rate-quality curve: quality (dB) vs bits per pixel.

    Measured by encoding calibration frames at a grid of budgets; interpolated linearly in
    log(bpp) (R-D curves of image codecs are close to linear there), clamped at the ends.
    """

    bpp: tuple[float, ...]
    quality_db: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.bpp) != len(self.quality_db) or not self.bpp:
            raise ValueError("bpp and quality_db must be non-empty and of equal length")
        if any(b <= 0 for b in self.bpp) or list(self.bpp) != sorted(self.bpp):
            raise ValueError("bpp must be positive and increasing")

    def quality_at(self, bpp: float) -> float:
        if bpp <= self.bpp[0]:
            return self.quality_db[0]
        if bpp >= self.bpp[-1]:
            return self.quality_db[-1]
        i = bisect.bisect_right(self.bpp, bpp)
        x0, x1 = math.log(self.bpp[i - 1]), math.log(self.bpp[i])
        w = (math.log(bpp) - x0) / (x1 - x0)
        return self.quality_db[i - 1] * (1 - w) + self.quality_db[i] * w


@dataclass(frozen=True)
class OracleView:
    """What only the clairvoyant policies (``needs_future``) may see: the link's real future.

    capacity_bytes(t0, t1): bytes the link can carry in [t0, t1) (share-scaled trace).
    backlog_bytes: on-link bytes queued ahead of this frame right now.
    delay_s: the link's true one-way propagation delay.

    The rest is the arm's context, for planning a whole arm (``optimal``); the defaults say
    "unknown": frames_total (frames in the arm), duration_s, the scenario's QoE switch and
    stall weights, queue_limit_bytes (drop-tail limit), finish_s(t, n) (when the link, from
    ``t`` on, has carried ``n`` bytes: the inverse of ``capacity_bytes``), and the playback
    startup_s and max_buffer_s; motion_mse (row ``k``: the mean squared error, pixels in
    [0, 1], of source frame ``k`` against frames ``k - 1 .. k - A``; None when the content
    is not known), from which a stale slot's quality follows; frame_floors (per frame, the
    smallest budget the codec codes it at, -1: none; None: not known); delivery_prob(w)
    (the probability that all the packets of a frame of ``w`` on-link bytes arrive, from
    the loss model's stationary state; None: no loss model).
    """

    capacity_bytes: Callable[[float, float], float]
    backlog_bytes: float
    delay_s: float
    frames_total: int | None = None
    duration_s: float | None = None
    switch_weight: float = 1.0
    stall_weight: float = 50.0
    queue_limit_bytes: float | None = None
    finish_s: Callable[[float, float], float] | None = None
    startup_s: float = 0.0
    max_buffer_s: float | None = None
    motion_mse: Sequence[Sequence[float]] | None = None
    frame_floors: Sequence[int] | None = None
    # the link's loss model as a planner may know it: the probability that a frame of this
    # many on-link bytes arrives whole (None: loss-free or not known)
    delivery_prob: Callable[[float], float] | None = None


@dataclass(frozen=True)
class Observation:
    """The sender's view when it must choose frame ``frame_index``'s budget.

    Times are seconds of virtual (SimPy) time. Throughput samples are bits/s measured by the
    receiver per delivered frame and reported back over the delayed feedback path, oldest
    first. ``wire_bytes(payload_bits)`` gives the on-link bytes (frame header + per-packet
    overhead included) that a payload of that many bits turns into.
    """

    now_s: float
    frame_index: int
    frame_interval_s: float
    pixels: int
    mode: Literal["interactive", "playback"]
    capture_s: float
    deadline_s: float | None  # absolute deadline (interactive), None in playback
    throughput_bps: tuple[float, ...]
    rtt_s: float | None
    one_way_delay_s: float | None
    loss_rate: float
    inflight_bytes: float  # on-link bytes sent but not yet reported delivered or lost
    buffer_s: float  # playback buffer level as last reported by the receiver
    encode_s: float  # expected encode compute time for this frame (charged before sending)
    decode_s: float  # expected decode compute time at the receiver
    min_bits: int  # codec floor for this frame size (below it the codec skips the frame)
    max_bits: int  # largest budget worth asking for (codec ceiling or scenario cap)
    wire_bytes: Callable[[int], float]
    rate_quality: RateQualityModel | None = None
    future: OracleView | None = None
    # The sender's estimate of on-link bytes still queued ahead of a frame sent now: its
    # unacknowledged frames drained at the throughput estimate since each was sent. Reports
    # lag by an RTT, so ``inflight_bytes`` still counts bytes the link has long delivered;
    # None (no estimate yet) makes policies fall back to ``inflight_bytes``.
    backlog_bytes: float | None = None
    # The sender's own send log, no feedback delay: how many of the frames just before this
    # one the codec skipped in a row (header-only frames, budget below what it could code),
    # and the largest budget among them (0 when none). ``escape_floor`` probes from these.
    skip_run: int = 0
    skip_run_max_bits: int = 0
    # Codec compute of a frame coded at ``bits``: (encode_s, decode_s), for a codec whose
    # declared cost depends on the budget (per-step costs, with the steps its calibration
    # measured at each budget). None: ``encode_s`` and ``decode_s`` hold for every budget.
    compute_at: Callable[[int], tuple[float, float]] | None = None

    @property
    def compute_s(self) -> float:
        return self.encode_s + self.decode_s

    def bits_for_bpp(self, bpp: float) -> int:
        return int(bpp * self.pixels)


class Policy(Protocol):
    """A budget controller. ``name`` is the registry key used in scenarios."""

    name: str

    def budget_bits(self, obs: Observation) -> int: ...


def clamp_bits(bits: float, obs: Observation) -> int:
    """Clamp to [0, max_bits]. Values below ``min_bits`` are kept: the codec then skips the
    frame and logs why, which is the honest outcome when the link cannot carry a frame."""
    return int(max(0, min(obs.max_bits, math.floor(bits))))


def queued_bytes(obs: Observation) -> float:
    """Bytes a new frame waits behind: the backlog estimate, else everything in flight."""
    return obs.backlog_bytes if obs.backlog_bytes is not None else obs.inflight_bytes


# --- helpers shared by the policies (additions; the contract above is unchanged) ------------


def recent_throughput_bps(obs: Observation, window: int) -> float | None:
    """Harmonic mean of the last ``window`` throughput samples (None when none is positive).

    The harmonic mean is the rate at which equal-sized frames would have been delivered, and
    it is dominated by the slow samples, which is what a budget must survive.
    """
    return harmonic_mean(obs.throughput_bps[-window:]) if window > 0 else None


def is_playback(obs: Observation) -> bool:
    """True when the frame's deadline is the playout buffer running dry, not ``deadline_s``.

    An interactive observation without a deadline has nothing else to go by, so it is treated
    the same way rather than crashing a run.
    """
    return obs.mode == "playback" or obs.deadline_s is None


def time_to_deadline_s(obs: Observation) -> float:
    """Seconds from ``now_s`` until this frame must be displayed.

    Interactive: until ``deadline_s``. Playback: until the playout buffer runs dry
    (``buffer_s``, the Pensieve rule: a download longer than the buffer rebuffers), plus one
    frame interval - the frame being fetched plays after the buffered ones. Without that
    interval an empty buffer would leave no window at all, every frame would be skipped and
    the buffer could never refill.
    """
    if obs.mode == "playback" or obs.deadline_s is None:
        return obs.buffer_s + obs.frame_interval_s
    return obs.deadline_s - obs.now_s


def payload_bits_for_wire_budget(
    obs: Observation, wire_bytes_budget: float, upper: int | None = None
) -> int:
    """Largest payload ``b`` in ``[0, upper]`` with ``obs.wire_bytes(b) <= wire_bytes_budget``.

    Policies reason about on-link bytes (what the link drains) but the codec takes payload bits;
    header and per-packet overhead make the map non-linear, so it is inverted by integer
    bisection (``wire_bytes`` is monotone non-decreasing). ``upper`` defaults to
    ``obs.max_bits``: budgets are clamped there anyway and the search needs a bound. Returns 0
    when even an empty payload does not fit (the codec then skips the frame).
    """
    hi = obs.max_bits if upper is None else upper
    if hi <= 0 or not obs.wire_bytes(0) <= wire_bytes_budget:  # also catches NaN budgets
        return 0
    if obs.wire_bytes(hi) <= wire_bytes_budget:
        return hi
    layout = getattr(obs.wire_bytes, "layout", None)  # SenderCore's: (header, chunk)
    if layout is not None:
        # the closed-form inverse (one packet-count division instead of ~20 calls), used
        # only where wire_bytes itself confirms it is the bisection's answer: the largest
        # b >= 1 that fits, or 0 when b = 1 does not (the bisection never tests b = 0)
        g = min(max(max_payload_bits(wire_bytes_budget, *layout), 0), hi - 1)
        if obs.wire_bytes(g + 1) > wire_bytes_budget and (
                g == 0 or obs.wire_bytes(g) <= wire_bytes_budget):
            return g
    lo = 0  # invariant: wire_bytes(lo) <= budget < wire_bytes(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if obs.wire_bytes(mid) <= wire_bytes_budget:
            lo = mid
        else:
            hi = mid
    return lo


def startup_bits(obs: Observation, bpp: float) -> int:
    """Budget for a frame sent before any throughput report has come back (the policies pass
    it through ``escape_floor``, which lifts it to the codec's floor)."""
    return clamp_bits(obs.bits_for_bpp(bpp), obs)


PROBE_AFTER_SKIPS = 3
"""Default ``probe_after_skips``: consecutive skipped frames before a probe (0.3 s at 10 fps)."""

PROBE_MAX_LOSS = 0.25
"""No probe while the loss estimate is above this: the link is dropping what it is given."""


def room_for_probe(obs: Observation) -> bool:
    """Whether a frame at the codec's floor may go out now (see ``escape_floor``): loss at
    most ``PROBE_MAX_LOSS``; encode + one-way delay + decode short of the deadline; and, with
    a throughput estimate (harmonic mean of the last 5 samples), the bytes queued ahead
    (``queued_bytes``) drain within one frame interval, i.e. queueing delay is not growing."""
    if obs.loss_rate > PROBE_MAX_LOSS:
        return False
    fixed_s = obs.encode_s + (obs.one_way_delay_s or 0.0) + obs.decode_s
    if fixed_s >= time_to_deadline_s(obs):  # late whatever its size: the skip costs nothing
        return False
    thr = harmonic_mean(obs.throughput_bps[-5:])
    if thr is None:
        return True
    if thr <= 0.0:  # (a denormal sample's harmonic mean underflows to 0)
        return queued_bytes(obs) <= 0.0
    return queued_bytes(obs) * 8.0 / thr <= obs.frame_interval_s


def escape_floor(bits: int, obs: Observation, probe_after: int | None) -> int:
    """The shared way out of a budget below the codec's floor (no startup dead end).

    A budget below ``obs.min_bits`` makes the codec skip the frame. A skipped frame is
    header-only: its report comes back, but it carries almost nothing to measure, so a
    policy that keeps asking for less than the floor can stay there. This rule, applied by
    every adaptive policy to its own budget ``bits``, gets it out:

    * Startup (no positive throughput sample among the last 5): the budget is at least the
      floor. Without a sample there is no evidence that the link cannot carry the smallest
      frame the codec makes, and a skipped frame would teach the sender nothing the floor
      frame does not.
    * Skip run (``obs.skip_run >= probe_after``; ``probe_after`` None: never): the next
      frame probes at ``max(floor, bits)``. The run ends as soon as a frame is coded, and
      then the policy's own rule applies again, so on a link that really cannot carry a
      floor frame per interval this sends one every ``probe_after + 1`` frames instead of
      none.
    * Geometric growth: when a budget at or above the floor was itself skipped in the run
      (the floor is an estimate, made on a pink-noise frame or, for a calibrated arm, on
      a few of the content's frames, and other frames may need more), the probe is twice
      the largest skipped budget: floor, 2x, 4x, ... until the codec can code the frame.
    * Guards (``room_for_probe``), so a probe never feeds a congested link or a lost cause:
      no probe while loss is above ``PROBE_MAX_LOSS``, while the queue ahead takes more than
      a frame interval to drain, or when the fixed latency alone passes the deadline.
      Nothing changes when the floor exceeds ``max_bits`` (no frame fits under the cap).

    It acts only where the codec skipped or would skip: a budget at or above the floor is
    returned unchanged unless a run of skipped frames had budgets at or above the floor too.
    """
    floor = obs.min_bits
    if floor <= 0 or floor > obs.max_bits:
        return bits
    startup = harmonic_mean(obs.throughput_bps[-5:]) is None
    if not startup and (probe_after is None or obs.skip_run < probe_after):
        return bits
    if not room_for_probe(obs):
        return bits
    probe = max(floor, bits)
    if obs.skip_run > 0 and obs.skip_run_max_bits >= floor:
        probe = max(probe, 2 * obs.skip_run_max_bits)
    return int(min(probe, obs.max_bits))


class PolicyModel(BaseModel):
    """Common base of the scenario-configurable policies.

    Options are validated, immutable pydantic fields so a scenario file is checked when it is
    loaded, not when the first frame is sent; ``kind`` is the discriminator of ``PolicySpec``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # True: the policy reads ``obs.future`` (the link's true future): the simulator fills
    # it, a live run needs shaping
    needs_future: ClassVar[bool] = False

    kind: str

    @property
    def name(self) -> str:
        """Registry key, so a policy model also satisfies the ``Policy`` protocol."""
        return self.kind

    @property
    def label(self) -> str:
        """Short, option-bearing name for tables and plot legends."""
        return self.kind

    def budget_bits(self, obs: Observation) -> int:
        raise NotImplementedError


def fmt(x: float) -> str:
    """Compact number for labels (0.85, 5, 1e+06)."""
    return f"{x:g}"
