"""``optimal`` with the shown image's age in its state: the aged DP equals an exhaustive search
on its grid, stale slots decay with content motion, freezes follow WebRTC's rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diffstream.control.policies.optimal_aged import (
    evaluate_interactive_aged,
    expectimax_interactive_aged,
    motion_rows,
    solve_interactive_aged,
    stale_quality,
    webrtc_run_charges,
)
from diffstream.control.policies.optimal_dp import backlog_grid_step, snap_up
from tests.unit.control.test_policy_optimal import (
    TRACES,
    T,
    interactive_frames,
    ladder,
    step_trace,
    weights,
)

# an outage of four slots: the best plan must sit through a stale run that freezes
CASES = {**TRACES, "outage": step_trace([800.0, 1.0, 1.0, 1.0, 1.0, 800.0])}

AGES = 6


def motion(n: int, per_slot: float = 0.004, cut_at: int | None = None) -> np.ndarray:
    """A pan: the error grows with the age; a shot cut makes every older frame useless."""
    m = np.zeros((n, AGES + 1))
    for j in range(n):
        for a in range(1, AGES + 1):
            m[j, a] = per_slot * a
            if cut_at is not None and j >= cut_at > j - a:
                m[j, a] = 0.1
    return m


def test_webrtc_run_charges_match_the_freeze_rule() -> None:
    # 10 fps: a gap of (m + 1) * 0.1 s freezes when it exceeds max(0.3, 0.25): m >= 3
    c = webrtc_run_charges(0.1, AGES, stall_w_s=1.0)
    assert c.tolist() == pytest.approx([0, 0, 0, 0.4, 0.1, 0.1, 0.1])
    # 30 fps: max(0.1, 0.183) s: m + 1 > 5.5, m >= 5
    c30 = webrtc_run_charges(1 / 30, 8, stall_w_s=1.0)
    assert np.flatnonzero(c30).tolist() == [5, 6, 7, 8]
    assert c30[5] == pytest.approx(6 / 30)
    with pytest.raises(ValueError, match="age cap"):
        webrtc_run_charges(1 / 30, 4, stall_w_s=1.0)


def test_stale_quality_adds_the_motion_error() -> None:
    assert stale_quality(30.0, 0.0) == pytest.approx(30.0)
    # 30 dB is an MSE of 1e-3; adding 1e-3 of motion halves the PSNR's linear value: -3.01 dB
    assert stale_quality(30.0, 1e-3) == pytest.approx(30.0 - 10 * np.log10(2))
    assert stale_quality(40.0, 0.01) < stale_quality(40.0, 0.001) < 40.0


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("prev_q", [None, 30.0])
@pytest.mark.parametrize("start_run", [0, 2])
@pytest.mark.parametrize("cut", [None, 2])
def test_aged_dp_equals_exhaustive_search(name: str, prev_q: float | None, start_run: int,
                                          cut: int | None) -> None:
    n, points = 5, 30
    frames = interactive_frames(CASES[name], n)
    lad = ladder(n)
    w = weights(n)
    mot = motion(n, per_slot=0.02, cut_at=cut)
    charge = webrtc_run_charges(T, AGES, w.stall_w_s)
    plan = solve_interactive_aged(frames, lad, w, mot, charge, points=points,
                                  start_quality=31.0, start_run=start_run,
                                  prev_quality=prev_q)
    step = backlog_grid_step(frames, points)
    values = {seq: evaluate_interactive_aged(frames, lad, w, mot, charge, seq, points=points,
                                             step=step, backlog0=0.0, start_quality=31.0,
                                             start_run=start_run, prev_quality=prev_q)
              for seq in itertools.product(range(lad.n_actions), repeat=n)}
    best = max(values.values())
    assert plan.start_value[0] == pytest.approx(best, abs=1e-12)
    # following the action table from the start state reaches the optimum
    seq, b, s, r = [], 0.0, 0, start_run
    for j in range(n):
        a = int(plan.action[j, int(snap_up(b, step, points)), s, r])
        seq.append(a)
        wa = lad.wire[j, a]
        after = max(0.0, b - frames.drain_encode[j]) + wa
        ok = b + wa <= frames.window_all[j] + 1e-6 and wa <= frames.window_frame[j] + 1e-6
        s, r = (a, 0) if ok and lad.bits[j, a] > 0 else (s, min(r + 1, AGES))
        b = float(snap_up(max(0.0, after - frames.drain_after[j]), step, points)) * step
    assert values[tuple(seq)] == pytest.approx(best, abs=1e-12)
    if name == "outage":  # not trivial: the optimum sends, then sits through the outage
        assert seq[0] != 0 and lad.bits[0, seq[0]] > 0


def lossy(lad_wire: np.ndarray, per_packet: float = 0.15, mtu: float = 300.0) -> np.ndarray:
    """A frame of w bytes in ceil(w / mtu) packets, each lost independently."""
    return (1.0 - per_packet) ** np.maximum(1, np.ceil(lad_wire / mtu))


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("prev_q", [None, 30.0])
@pytest.mark.parametrize("start_run", [0, 2])
def test_lossy_aged_dp_equals_expectimax(name: str, prev_q: float | None,
                                         start_run: int) -> None:
    """With loss the DP's value is the expectation under the best closed-loop policy: equal
    to a plain recursion over every action and every delivered/lost outcome."""
    n, points = 5, 30
    frames = interactive_frames(CASES[name], n)
    lad = ladder(n)
    w = weights(n)
    mot = motion(n, per_slot=0.02)
    charge = webrtc_run_charges(T, AGES, w.stall_w_s)
    delivered = lossy(lad.wire)
    assert 0.3 < delivered[:, 1:].min() < delivered[:, 1:].max() < 1.0  # sizes matter
    plan = solve_interactive_aged(frames, lad, w, mot, charge, points=points,
                                  start_quality=31.0, start_run=start_run,
                                  prev_quality=prev_q, delivered=delivered)
    step = backlog_grid_step(frames, points)
    ref = expectimax_interactive_aged(frames, lad, w, mot, charge, delivered, points=points,
                                      step=step, backlog0=0.0, start_quality=31.0,
                                      start_run=start_run, prev_quality=prev_q)
    assert plan.start_value[0] == pytest.approx(ref, abs=1e-9)
    # certain delivery is the loss-free model, exactly
    sure = solve_interactive_aged(frames, lad, w, mot, charge, points=points,
                                  start_quality=31.0, start_run=start_run,
                                  prev_quality=prev_q, delivered=np.ones_like(delivered))
    free = solve_interactive_aged(frames, lad, w, mot, charge, points=points,
                                  start_quality=31.0, start_run=start_run, prev_quality=prev_q)
    assert np.array_equal(sure.action, free.action)
    assert sure.start_value[0] == free.start_value[0]
    # loss never helps, and the recursion at certain delivery is the exhaustive optimum
    assert plan.start_value[0] <= free.start_value[0] + 1e-12
    ones = expectimax_interactive_aged(frames, lad, w, mot, charge, np.ones_like(delivered),
                                       points=points, step=step, backlog0=0.0,
                                       start_quality=31.0, start_run=start_run,
                                       prev_quality=prev_q)
    assert ones == pytest.approx(free.start_value[0], abs=1e-9)


def test_loss_aware_plan_sends_smaller_frames_on_a_lossy_link() -> None:
    """A big frame is many packets, each a chance to lose the whole frame: with heavy loss
    the expected-value plan moves down the ladder where the loss-free one fills the link."""
    n, points = 5, 30
    frames = interactive_frames(CASES["constant"], n)
    lad = ladder(n)
    w = weights(n)
    mot = motion(n, per_slot=0.02)
    charge = webrtc_run_charges(T, AGES, w.stall_w_s)
    kw = dict(points=points, start_quality=31.0, start_run=0, prev_quality=30.0)
    free = solve_interactive_aged(frames, lad, w, mot, charge, **kw)
    heavy = solve_interactive_aged(frames, lad, w, mot, charge, delivered=lossy(
        lad.wire, per_packet=0.15, mtu=300.0), **kw)
    a_free, a_heavy = int(free.action[0, 0, 0, 0]), int(heavy.action[0, 0, 0, 0])
    assert lad.bits[0, a_free] > 0 and lad.bits[0, a_heavy] > 0
    assert lad.wire[0, a_heavy] < lad.wire[0, a_free]


def test_stale_runs_cost_more_with_motion() -> None:
    """Skipping every other frame: free of freezes, but a faster pan makes it worse."""
    n = 5
    frames = interactive_frames(TRACES["constant"], n)
    lad = ladder(n)
    w = weights(n)
    charge = webrtc_run_charges(T, AGES, w.stall_w_s)
    step = backlog_grid_step(frames, 30)

    def value(seq: tuple[int, ...], per_slot: float) -> float:
        return evaluate_interactive_aged(frames, lad, w, motion(n, per_slot), charge, seq,
                                         points=30, step=step, backlog0=0.0,
                                         start_quality=31.0, start_run=0, prev_quality=None)

    alt = (1, 0, 1, 0, 1)
    assert value(alt, 0.001) > value(alt, 0.01)
    # no freeze in a run of two; the third stale slot in a row pays the whole gap
    three = (1, 0, 0, 0, 1)
    two = (1, 0, 0, 1, 1)
    assert value(two, 0.0) - value(three, 0.0) > 0.9 * 4 * T * w.stall_w_s


def test_motion_rows_reads_the_arm_table() -> None:
    table = [[0.0] * 3, [0.01, 0.02, 0.03], [0.02, 0.04, 0.06]]
    m = motion_rows(table, 1, 2, ages=4)
    assert m is not None and m.shape == (2, 5)
    assert m[0, 1:].tolist() == [0.01, 0.02, 0.03, 0.03]  # age 4 repeats the oldest
    assert m[1, 2] == 0.04
    assert motion_rows(None, 0, 3, ages=4) is None
    assert motion_rows([[float("nan")]], 0, 1, ages=2) is None


def test_a_reported_loss_is_not_taken_as_shown() -> None:
    """The plan assumes a coded frame shown; the report of a frame that did not arrive
    whole puts the policy back in the state the viewer is in (older image, longer run)."""
    from diffstream.control.feedback import DeliveryReport
    from diffstream.control.policies import OptimalPolicy
    from diffstream.control.policies.optimal import Shown

    def report(seq: int, missing: int) -> DeliveryReport:
        return DeliveryReport(seq=seq, send_s=0.0, wire_bytes=900, packets=3,
                              delivered_bytes=900 - 300 * missing, packets_missing=missing,
                              first_arrival_s=0.1, last_arrival_s=0.2, throughput_bps=None,
                              sent_at_s=0.2, buffer_s=0.0)

    for plan_loss, kept in ((True, [3, 5]), (False, [3, 4, 5])):
        pol = OptimalPolicy(plan_loss=plan_loss)
        pol._shown = [Shown(k=k, plan=None, index=1, quality=30.0)  # type: ignore[arg-type]
                      for k in (3, 4, 5)]
        pol.on_report(report(5, 0), 0.3)  # arrived whole: still shown
        pol.on_report(report(4, 1), 0.3)
        assert [s.k for s in pol._shown] == kept


def _model_freeze_s(shown: list[bool], charge: np.ndarray, ages: int) -> float:
    """Freeze seconds the DP charges along a path (stall weight 1), run by run."""
    total, run = 0.0, 0
    for j, on in enumerate(shown):
        if on:
            run = 0
            continue
        run = min(run + 1, ages)
        total += float(charge[j, run])
    return total


@pytest.mark.parametrize("seed", range(6))
def test_averaged_charges_are_the_metrics_freezes_along_the_path(seed: int) -> None:
    """Along any path that starts and ends on a shown frame, the per-frame charges sum to
    the freeze seconds ``metrics.qoe.webrtc_freezes`` counts on it: the model's freeze rule,
    with WebRTC's running 30-interval average, is the scored one."""
    from diffstream.control.policies.optimal_aged import averaged_run_charges
    from diffstream.metrics.qoe import webrtc_freezes

    rng = np.random.default_rng(seed)
    t = 0.125  # exact in binary: slot times and gaps compare without rounding ties
    n, ages = 240, 40
    # stretches of dense and of sparse sending, runs of every length up to 12
    shown: list[bool] = []
    while len(shown) < n - 1:
        dense = rng.random() < 0.5
        for _ in range(int(rng.integers(5, 40))):
            shown += [True] + [False] * int(rng.integers(0, 2 if dense else 12))
    shown = shown[:n - 1] + [True]
    charge = averaged_run_charges(shown, [], t, ages, stall_w_s=1.0)
    display = [j * t for j, on in enumerate(shown) if on]
    want = sum(d for _, d in webrtc_freezes(display, t, 0.0, (n - 1) * t))
    assert want > 0
    assert _model_freeze_s(shown, charge, ages) == pytest.approx(want, abs=1e-9)
    # the nominal rule (every row the nominal charges) is not the metric on such a path
    nominal = np.broadcast_to(webrtc_run_charges(t, ages, 1.0), charge.shape)
    assert _model_freeze_s(shown, nominal, ages) > want + 0.1


def test_averaged_charges_follow_the_history_and_clamp_at_the_cap() -> None:
    from diffstream.control.policies.optimal_aged import averaged_run_charges

    t = 0.1
    # 30 intervals of 0.2 s in the history: threshold max(0.6, 0.35) s, first freeze at m = 6
    c = averaged_run_charges([False] * 3, [0.2] * 30, t, 10, 1.0, last_shown=-1)
    assert np.flatnonzero(c[0]).tolist() == [6, 7, 8, 9, 10] and c[0, 6] == pytest.approx(0.7)
    # nothing shown yet: the nominal interval
    assert np.array_equal(averaged_run_charges([False], [], t, 10, 1.0)[0],
                          webrtc_run_charges(t, 10, 1.0))
    # an average whose first freezing run passes the cap is charged just under the cap
    wide = averaged_run_charges([False], [0.5] * 30, t, 8, 1.0, last_shown=-1)
    assert np.flatnonzero(wide[0]).tolist() == [7, 8]


@pytest.mark.parametrize("name", sorted(CASES) + ["outage_first"])
def test_aged_dp_with_per_frame_charges_equals_exhaustive_search(name: str) -> None:
    """Per-frame charges (each frame its own freeze threshold) keep the DP exact; the
    ``outage_first`` case (nothing fits for three slots) forces a run through them."""
    n, points = 5, 30
    trace = (step_trace([1.0] * 5 + [800.0]) if name == "outage_first"
             else CASES[name])
    frames = interactive_frames(trace, n)
    lad = ladder(n)
    w = weights(n)
    mot = motion(n, per_slot=0.02)
    # three thresholds (averages 0.1, 0.15, 0.2 s), each frame's row scaled apart as well
    charge = np.stack([webrtc_run_charges(T, AGES, w.stall_w_s, avg_s=avg)
                       for avg in (0.1, 0.15, 0.1, 0.2, 0.1)])
    charge *= np.array([1.0, 3.0, 0.5, 2.0, 4.0])[:, None]
    plan = solve_interactive_aged(frames, lad, w, mot, charge, points=points,
                                  start_quality=31.0, start_run=2, prev_quality=30.0)
    step = backlog_grid_step(frames, points)
    best = max(evaluate_interactive_aged(frames, lad, w, mot, charge, seq, points=points,
                                         step=step, backlog0=0.0, start_quality=31.0,
                                         start_run=2, prev_quality=30.0)
               for seq in itertools.product(range(lad.n_actions), repeat=n))
    assert plan.start_value[0] == pytest.approx(best, abs=1e-12)
