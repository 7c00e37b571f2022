"""``optimal`` with the shown image's age in its state: the aged DP equals an exhaustive search
on its grid, stale slots decay with content motion, freezes follow WebRTC's rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diffstream.control.policies.optimal_aged import (
    evaluate_interactive_aged,
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
