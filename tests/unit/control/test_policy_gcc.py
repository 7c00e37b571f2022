"""``policy: {kind: gcc}``: the GCC state machine driven by synthetic delivery reports
(delay ramps, steady and falling delay, loss bursts), the budget it gives, and the per-arm
state it keeps (SenderCore's own copy, the on_report hook)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from diffstream.control.feedback import DeliveryReport
from diffstream.control.gcc import BandwidthUsage, GccConfig, GccController, RateControlState
from diffstream.control.policies import GccPolicy, parse_policy
from diffstream.control.policies.base import escape_floor, payload_bits_for_wire_budget
from diffstream.pipeline.encoder import ArmInfo
from diffstream.pipeline.sender_core import SenderCore
from diffstream.scenario.load import load_scenario
from tests.conftest import tiny_scenario
from tests.unit.control.test_policy import make_obs

FRAME_S = 0.1
BASE_S = 0.02  # one-way propagation delay
FEEDBACK_S = 0.02  # report path


def report(seq: int, queue_s: float, *, size: int = 1250, packets: int = 2,
           missing: int = 0) -> tuple[DeliveryReport, float]:
    """Frame ``seq``, sent at seq x 100 ms, arriving after the base delay plus ``queue_s``;
    returns the report and when it reaches the sender."""
    send = seq * FRAME_S
    arrived = missing < packets
    last = send + BASE_S + queue_s if arrived else None
    rep = DeliveryReport(seq=seq, send_s=send, wire_bytes=size, delivered_bytes=size if arrived
                         else 0, packets=packets, packets_missing=missing,
                         first_arrival_s=last, last_arrival_s=last, throughput_bps=None,
                         sent_at_s=last if last is not None else send + 0.2, buffer_s=0.0)
    return rep, (last if last is not None else send + 0.2) + FEEDBACK_S


class Drive:
    """Feeds a controller frame after frame; ``queue`` says each frame's queueing delay."""

    def __init__(self, start_bps: float = 80_000) -> None:
        self.ctl = GccController(GccConfig(start_bps=start_bps))
        self.seq = 0
        self.log: list[tuple[float, BandwidthUsage, RateControlState, float, float | None]] = []

    def run(self, frames: int, queue, **kw) -> None:  # type: ignore[no-untyped-def]
        for _ in range(frames):
            rep, now = report(self.seq, queue(self.seq), **kw)
            self.ctl.on_report(rep, now)
            c = self.ctl
            self.log.append((now, c.usage, c.aimd.state, c.aimd.current_bps,
                             c.receive_rate.rate_bps()))
            self.seq += 1


def ramp_from(start: int, ms_per_frame: float, base_s: float = 0.0):  # type: ignore[no-untyped-def]
    return lambda k: base_s + max(0, k - start) * ms_per_frame / 1000


RAMP = ramp_from(40, 8.0)  # 4 s steady, then the queue grows 8 ms per 100 ms frame
RAMP_END = 70
PEAK_S = RAMP(RAMP_END - 1)


def test_steady_delay_increases_multiplicatively_far_from_convergence() -> None:
    d = Drive(start_bps=500_000)  # 1 Mbit/s received: 8 %/s beats the 1 kbit/s minimum step
    d.run(40, lambda k: 0.0, size=12_500)
    assert all(u is BandwidthUsage.NORMAL for _, u, *_ in d.log)
    assert d.log[-1][2] is RateControlState.INCREASE
    assert not d.ctl.aimd.link_capacity.has_estimate
    (t0, *_, r0, _), (t1, *_, r1, _) = d.log[-11], d.log[-1]
    assert r1 / r0 == pytest.approx(1.08 ** (t1 - t0))  # 8 %/s, by elapsed time
    assert r1 > 500_000 * 1.08 ** 3


def test_delay_ramp_is_overuse_and_decreases_to_085_times_received() -> None:
    d = Drive()
    d.run(RAMP_END, RAMP)
    usages = [u for _, u, *_ in d.log]
    first = usages.index(BandwidthUsage.OVERUSING)
    assert first > 40  # steady before, over-use once the ramp shows in the trend
    rates = [r for *_, r, _ in d.log]
    drop = next(i for i in range(1, len(rates)) if rates[i] < rates[i - 1])
    # the cut waits one RTT after the last change (TimeToReduceFurther)
    assert first <= drop <= first + 2 and usages[drop] is BandwidthUsage.OVERUSING
    received = d.log[drop][4]
    assert received is not None
    assert rates[drop] == pytest.approx(0.85 * received)
    assert d.log[drop][2] is RateControlState.HOLD  # Decrease -> Hold
    assert d.ctl.target_bps <= rates[-1]


def test_falling_delay_is_underuse_and_holds() -> None:
    d = Drive()
    d.run(RAMP_END, RAMP)
    d.run(30, lambda k: max(0.0, PEAK_S - (k - RAMP_END + 1) * 0.008))  # the queue drains
    tail = d.log[RAMP_END:]
    under = [i for i, (_, u, *_) in enumerate(tail) if u is BandwidthUsage.UNDERUSING]
    assert under, "a draining queue must read as under-use"
    for i in under:
        assert tail[i][2] is RateControlState.HOLD
        if i > 0 and tail[i - 1][1] is BandwidthUsage.UNDERUSING:
            assert tail[i][3] == tail[i - 1][3]  # the rate holds while the queue drains


def test_steady_delay_after_a_decrease_increases_additively() -> None:
    d = Drive()
    d.run(RAMP_END, RAMP)
    d.run(100, lambda k: PEAK_S)  # the queue stays: delay flat again
    a = d.ctl.aimd
    assert a.link_capacity.has_estimate and a.state is RateControlState.INCREASE
    (t0, *_, r0, _), (t1, *_, r1, _) = d.log[-2], d.log[-1]
    assert r0 / 30 / 8 < 1200  # one packet per (30 fps) frame: half a packet per response
    per_s = max(4000.0, (r0 / 30) / (2 * (a.rtt_s + 0.1)))
    assert r1 - r0 == pytest.approx(per_s * (t1 - t0), rel=1e-6)
    assert r1 / r0 < 1.08 ** (t1 - t0)  # slower than the multiplicative ramp


def test_loss_burst_over_10_percent_backs_off_by_half_the_loss() -> None:
    d = Drive(start_bps=60_000)
    d.run(30, lambda k: 0.0)  # 3 s, no loss (60 packets: the counters are empty again)
    d.run(1, lambda k: 0.0, packets=10, missing=3)  # 10 packets: no fraction yet
    before = d.ctl.loss.target_bps
    d.run(1, lambda k: 0.0, packets=10, missing=3)  # 20 packets counted: 6 lost
    loss = d.ctl.loss
    assert loss.fraction_loss_q8 == (6 << 8) // 20
    assert loss.target_bps == pytest.approx(before * (1 - 0.5 * 0.3), rel=0.01)
    assert d.ctl.target_bps == pytest.approx(loss.target_bps)  # min(delay, loss) is loss


def test_low_loss_grows_8_percent() -> None:
    c = GccController(GccConfig(start_bps=60_000))
    for k in range(25):  # 2.5 s: out of the start phase, 25 x 1 packets, none lost
        rep, now = report(k, 0.0, packets=1)
        c.on_report(rep, now)
    assert c.loss.fraction_loss_q8 == 0
    # the increase is 8 % over the lowest rate of the last second, plus 1 kbit/s
    hist_min = c.loss._min_history[0][1]
    assert c.loss.target_bps == pytest.approx(min(hist_min * 1.08 + 1000,
                                                  c.aimd.current_bps), abs=1)


# --- the policy ----------------------------------------------------------------------------

def test_budget_is_the_rate_for_one_frame_interval() -> None:
    p = GccPolicy(start_rate_bps=40_000, probe_after_skips=None)
    obs = make_obs(throughput_bps=(50_000.0,))
    expected = payload_bits_for_wire_budget(obs, 40_000 * 0.1 / 8)
    assert p.budget_bits(obs) == expected
    assert p.controller is not None and p.controller.target_bps == 40_000


def test_start_rate_from_startup_bpp_and_escape_floor() -> None:
    p = parse_policy({"kind": "gcc", "startup_bpp": 0.5})
    obs = make_obs()  # no throughput sample yet: escape_floor's startup rule applies
    assert p.rate_bps(obs) == pytest.approx(0.5 * 4096 / 0.1)
    bits = payload_bits_for_wire_budget(obs, 0.5 * 4096 / 8)
    assert p.budget_bits(obs) == escape_floor(bits, obs, 3)
    low = GccPolicy(start_rate_bps=5000)
    assert low.budget_bits(make_obs(min_bits=2000)) == 2000  # lifted to the codec floor


def test_reports_before_the_first_budget_are_kept_in_order() -> None:
    a, b = GccPolicy(start_rate_bps=60_000), GccPolicy(start_rate_bps=60_000)
    reports = [report(k, 0.0) for k in range(30)]
    for rep, now in reports:
        a.on_report(rep, now)
    assert a.controller is None
    b.budget_bits(make_obs())
    for rep, now in reports:
        b.on_report(rep, now)
    assert a.rate_bps(make_obs()) == b.rate_bps(make_obs())
    assert a.controller is not None and a.controller.reports == 30


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="max_rate_bps"):
        parse_policy({"kind": "gcc", "min_rate_bps": 10_000, "max_rate_bps": 5000})
    with pytest.raises(ValidationError, match="high_loss_threshold"):
        parse_policy({"kind": "gcc", "low_loss_threshold": 0.2, "high_loss_threshold": 0.1})
    with pytest.raises(ValidationError):
        parse_policy({"kind": "gcc", "window_size": 5})
    with pytest.raises(ValidationError):
        parse_policy({"kind": "gcc", "backoff_factor": 1.0})
    assert parse_policy({"kind": "gcc"}).label == "gcc(b=0.85)"


def test_max_rate_caps_the_budget() -> None:
    p = GccPolicy(start_rate_bps=200_000, max_rate_bps=20_000, probe_after_skips=None)
    obs = make_obs(throughput_bps=(1e6,))
    assert p.budget_bits(obs) == payload_bits_for_wire_budget(obs, 20_000 * 0.1 / 8)


# --- per-arm state in SenderCore -----------------------------------------------------------

def _core(sc, arm) -> SenderCore:  # type: ignore[no-untyped-def]
    return SenderCore(sc, arm, ArmInfo(min_bits=100, progressive=False, rq=None,
                                       header_bytes=40))


def test_each_sender_core_has_its_own_policy_state(tmp_path: Path) -> None:
    sc, _ = load_scenario(tiny_scenario(tmp_path, arms=[
        {"codec": "jpeg", "policy": {"kind": "gcc", "start_rate_bps": 60_000}}]))
    arm = sc.arms[0]
    one, two = _core(sc, arm), _core(sc, arm)
    assert one.policy is not two.policy and one.policy is not arm.policy
    obs = one.observe(0, 0.0, 0.0, 0.3)
    one.budget(obs)
    for k in range(40):  # a ramp: only core one hears of it
        rep, now = report(k, ramp_from(10, 6.0)(k))
        one.on_report(rep, now)
    assert one.policy.controller is not None and one.policy.controller.reports == 40
    assert arm.policy.controller is None  # the scenario's policy is never touched
    two.budget(two.observe(0, 0.0, 0.0, 0.3))
    assert two.policy.controller is not None and two.policy.controller.reports == 0
    assert one.policy.rate_bps(obs) != two.policy.rate_bps(obs)


def test_a_lost_frame_counts_as_loss_only_and_silence_resets_the_delay_filters() -> None:
    c = GccController(GccConfig(start_bps=60_000))
    for k in range(30):
        c.on_report(*report(k, 0.0))
    deltas = c.trendline.num_of_deltas
    rep, now = report(30, 0.0, packets=3, missing=3)  # nothing arrived
    c.on_report(rep, now)
    assert c.trendline.num_of_deltas == deltas  # no delay sample from a lost frame
    assert (c.loss._lost, c.loss._expected) == (3, 3)  # counted: 3 of 3 lost (60 before: reset)
    rep, _ = report(60, 0.0)  # 3 s later: more than kStreamTimeOut (2 s) of silence
    c.on_report(rep, rep.last_arrival_s + FEEDBACK_S)  # type: ignore[operator]
    assert c.trendline.num_of_deltas == 0 and c.inter_arrival.resets == 0
    assert c.detector.threshold == 12.5  # a fresh detector


def test_sweep_arms_share_one_policy_object_but_not_its_state(tmp_path: Path) -> None:
    from diffstream.sweep.schema import Grid

    arms = Grid.model_validate({"codecs": ["jpeg", "webp"],
                                "policies": [{"kind": "gcc", "start_rate_bps": 60_000}]}
                               ).arm_specs()
    assert arms is not None and arms[0].policy is arms[1].policy  # codecs x policies
    sc, _ = load_scenario(tiny_scenario(tmp_path))
    jpeg, webp = _core(sc, arms[0]), _core(sc, arms[1])
    obs = jpeg.observe(0, 0.0, 0.0, 0.3)
    jpeg.budget(obs)
    webp.budget(obs)
    for k in range(40):
        jpeg.on_report(*report(k, RAMP(k + 30)))
    assert jpeg.policy.controller.reports == 40  # type: ignore[union-attr]
    assert webp.policy.controller.reports == 0  # type: ignore[union-attr]
