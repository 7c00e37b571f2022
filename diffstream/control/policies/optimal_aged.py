"""Interactive DP with the age of the shown image in its state: stale slots by content motion,
freezes by WebRTC's rule (``policy: {kind: optimal}`` when the content is known).

``optimal_dp.solve_interactive`` scores every skipped or late slot alike (the floor's
quality minus a penalty) and charges each one a frame interval of stall. Measured on the
leaderboard (fcc_10322, JPEG 128x128, 3 % share) that model plans long skip runs the viewer
pays for twice over: a stale slot's real quality falls with its age as the content moves
(19.5 dB shown, then 16.7, 14.3, 12.9, 11.9, ... dB one, two, three, four slots later), and
WebRTC's freeze rule (``metrics.qoe``) charges nothing for a run of one or two stale slots
but the whole gap for a longer one. This solver models both:

**State** at frame ``j``'s decision: the link backlog ``B`` (as ``optimal_dp``), the action
``s`` of the last shown frame, and ``r``, the stale slots since it (0: slot ``j - 1`` showed
a fresh frame), capped at ``R = motion.shape[1] - 1`` (a longer run stays at ``R``: its
shown frame is taken to be ``R + 1`` slots back, its motion the ``R``-slot motion; the
documented approximation). ``s = 0`` stands for the frame shown before the plan started,
of quality ``start_quality``.

**Slot quality.** Fresh: ``quality[j, a]``. Stale at age ``r + 1``: the shown frame's
quality ``Qs`` and the content's motion ``m = motion[j, r + 1]`` (the mean squared error,
pixels in [0, 1], between source frames ``j`` and ``j - r - 1``) combine as independent
errors: ``-10 log10(10^(-Qs/10) + m)`` (exact in expectation for PSNR when the coding error
and the motion are uncorrelated; for other metrics the same form is an approximation).

**Stall.** ``charge[m]`` is charged when a stale run reaches length ``m`` (``m > R``:
``charge[R]``). :func:`webrtc_run_charges` builds it from WebRTC's rule with the average
interval held at the nominal one: a run of ``m`` stale slots is a gap of ``(m + 1) T``,
a freeze when ``(m + 1) T > max(3 T, T + 0.15 s)``; the run that first crosses pays the
whole gap, each slot after it one ``T``. (libwebrtc averages the last 30 intervals, so in a
stretch of sparse frames it forgives longer runs; this model is the conservative reading.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from diffstream.control.policies.optimal_dp import (
    InteractiveFrames,
    Ladder,
    Plan,
    Weights,
    backlog_grid_step,
    frame_step,
    interactive_step,
    snap_up,
)

#: libwebrtc's freeze rule constants (``metrics.qoe`` holds the evaluator's copy; control
#: may not import metrics, both sit in layer 2): ``delta > max(3 avg, avg + 0.150 s)``.
FREEZE_FACTOR = 3.0
FREEZE_MIN_INCREASE_S = 0.150


def first_freezing_run(interval_s: float) -> int:
    """The shortest run of stale slots that WebRTC counts as a freeze at the nominal
    interval: the gap ``(m + 1) T`` exceeds ``max(3 T, T + 0.15 s)``."""
    threshold = max(FREEZE_FACTOR * interval_s, interval_s + FREEZE_MIN_INCREASE_S)
    return math.floor(threshold / interval_s + 1e-9)  # (m + 1) T > threshold


def webrtc_run_charges(interval_s: float, ages: int, stall_w_s: float) -> np.ndarray:
    """``charge[m]`` for ``m = 0..ages``: the freeze seconds (times ``stall_w_s``) a stale run
    adds when it reaches length ``m``, under WebRTC's rule at the nominal interval."""
    first = first_freezing_run(interval_s)
    if first >= ages:
        raise ValueError(f"the age cap ({ages}) must exceed the first freezing run ({first})")
    charge = np.zeros(ages + 1)
    charge[first] = (first + 1) * interval_s * stall_w_s
    charge[first + 1:] = interval_s * stall_w_s
    return charge


def stale_quality(shown_db: np.ndarray | float, motion: np.ndarray | float) -> np.ndarray:
    """A stale slot's quality from its shown frame's and the content's motion error."""
    return -10.0 * np.log10(np.power(10.0, -np.asarray(shown_db, dtype=float) / 10.0)
                            + np.asarray(motion, dtype=float))


def _shown_quality(ladder: Ladder, j: int, ages: int, start_quality: float) -> np.ndarray:
    """``Qs[r, s]`` at frame ``j``: the quality of action ``s`` of frame ``j - 1 - r``
    (``s = 0`` or before the plan: the pre-plan frame's ``start_quality``)."""
    a_n = ladder.n_actions
    out = np.full((ages + 1, a_n), float(start_quality))
    for r in range(ages + 1):
        k = j - 1 - r
        if k >= 0:
            out[r, 1:] = ladder.quality[k, 1:]
    return out


def _slot_tables(ladder: Ladder, motion: np.ndarray, j: int, start_quality: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(stale quality ``Qst[r, s]`` of slot ``j``, the previous slot's quality ``Qp[r, s]``)."""
    ages = motion.shape[1] - 1
    ar = np.minimum(np.arange(ages + 1) + 1, ages)
    qst = stale_quality(_shown_quality(ladder, j, ages, start_quality), motion[j, ar][:, None])
    if j == 0:
        return qst, np.zeros_like(qst)  # the previous slot is the caller's prev_quality
    prev_st = stale_quality(_shown_quality(ladder, j - 1, ages, start_quality),
                            motion[j - 1, ar][:, None])
    qp = np.empty_like(qst)
    qp[0] = _shown_quality(ladder, j, ages, start_quality)[0]  # slot j-1 showed action s
    qp[1:] = prev_st[:-1]  # slot j-1 was stale at run r: Qst_{j-1}[r - 1]
    qp[ages] = prev_st[ages]  # at the cap the run stays at the cap
    return qst, qp


def _best_with_switch(x: np.ndarray, q: np.ndarray, w: float, p: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``max_a x[b, a] - w |q[a] - p[i]|`` and its argmax, for every ``b`` and ``i``, in
    ``O(M A + M P)`` instead of ``O(M A P)`` (the solver's inner loop)."""
    m, a_n = x.shape
    order = np.argsort(q, kind="stable")
    qs = q[order]
    lo = x[:, order] - w * qs[None, :]  # q_a >= p: (x - w q_a) + w p
    up = x[:, order] + w * qs[None, :]  # q_a < p: (x + w q_a) - w p
    suf = np.full((m, a_n + 1), -np.inf)
    suf_i = np.zeros((m, a_n + 1), dtype=np.int64)
    for i in range(a_n - 1, -1, -1):
        take = lo[:, i] >= suf[:, i + 1]
        suf[:, i] = np.where(take, lo[:, i], suf[:, i + 1])
        suf_i[:, i] = np.where(take, order[i], suf_i[:, i + 1])
    pre = np.full((m, a_n + 1), -np.inf)
    pre_i = np.zeros((m, a_n + 1), dtype=np.int64)
    for i in range(a_n):
        take = up[:, i] > pre[:, i]
        pre[:, i + 1] = np.where(take, up[:, i], pre[:, i])
        pre_i[:, i + 1] = np.where(take, order[i], pre_i[:, i])
    pos = np.searchsorted(qs, p, side="left")  # actions pos.. have q >= p
    hi = suf[:, pos] + w * p[None, :]
    below = pre[:, pos] - w * p[None, :]
    use_hi = hi >= below
    return np.where(use_hi, hi, below), np.where(use_hi, suf_i[:, pos], pre_i[:, pos])


def solve_interactive_aged(frames: InteractiveFrames, ladder: Ladder, weights: Weights,
                           motion: np.ndarray, charge: np.ndarray, *, points: int,
                           start_quality: float, start_run: int,
                           prev_quality: float | None) -> Plan:
    """Backward induction over ``(backlog, last shown action, run)``; ``action[j, b, s, r]``.

    ``motion[j, a]`` (``a = 0..R``, column 0 unused) and ``charge[m]`` as in the module
    docstring; ``start_quality``/``start_run``: the real last shown frame's quality and the
    stale slots since it; ``prev_quality``: the real previous slot's quality (None: the
    arm's first frame, no switch term). ``start_value[b]`` is the optimum from
    ``(b, s=0, start_run)``.
    """
    n, a_n = ladder.bits.shape
    ages = motion.shape[1] - 1
    if charge.shape != (ages + 1,):
        raise ValueError(f"charge needs {ages + 1} entries, got {charge.shape}")
    step = backlog_grid_step(frames, points)
    grid = np.arange(points, dtype=float) * step
    value = np.zeros((points, a_n, ages + 1))  # V_{j+1}[b, s, r]
    action = np.zeros((n, points, a_n, ages + 1), dtype=np.int8)
    cols = np.arange(a_n)
    r_next = np.minimum(np.arange(ages + 1) + 1, ages)
    charge_next = charge[r_next]  # (R+1,) by the current run r
    qw, sw = weights.quality_w, weights.switch_w
    start = np.zeros(points)
    for j in range(n - 1, -1, -1):
        q = ladder.quality[j]
        ok, nxt_b = interactive_step(frames, j, grid[:, None], ladder.wire[j][None, :])
        shown = ok & (ladder.bits[j][None, :] > 0)  # (M, A)
        nxt = snap_up(nxt_b, step, points)  # (M, A)
        qst, qp = _slot_tables(ladder, motion, j, start_quality)  # (R+1, A) by [r, s]
        if j == 0:
            w = sw if prev_quality is not None else 0.0
            qp = np.full_like(qp, prev_quality if prev_quality is not None else 0.0)
        else:
            w = sw
        # Stale slot: the skip is the best of the actions that leave it stale (a late
        # frame scores the same and queues more bytes, and V never rises with the
        # backlog), so only its continuation is needed: by (b, s, r).
        st_reward = (qw * qst - w * np.abs(qst - qp)).T - charge_next[None, :]  # (A_s, R+1)
        v_skip = st_reward[None] + value[nxt[:, 0]][:, :, r_next]  # (M, A_s, R+1)
        # Shown: max_a X[b, a] - w |q_a - p| over the shown actions, for every previous
        # quality p = qp[r, s]: split at p (q_a >= p: (X - w q_a) + w p; q_a < p:
        # (X + w q_a) - w p) and take running maxima over the actions sorted by quality
        x = np.where(shown, qw * q[None, :] + value[nxt, cols[None, :], 0], -np.inf)
        f, arg = _best_with_switch(x, q, w, qp.T.reshape(-1))  # (M, A_s * (R+1))
        f = f.reshape(points, a_n, ages + 1)
        arg = arg.reshape(points, a_n, ages + 1)
        coded = f > v_skip  # ties: the skip (the cautious one)
        best = np.where(coded, arg, 0)
        v = np.where(coded, f, v_skip)
        action[j] = best
        value = v
        if j == 0:
            start = v[:, 0, min(start_run, ages)]
    return Plan(action=action, start_value=start, step=step)


def evaluate_interactive_aged(frames: InteractiveFrames, ladder: Ladder, weights: Weights,
                              motion: np.ndarray, charge: np.ndarray, actions: Sequence[int],
                              *, points: int, step: float, backlog0: float,
                              start_quality: float, start_run: int,
                              prev_quality: float | None) -> float:
    """The aged model's objective of one action sequence, frame by frame (the reference the
    exhaustive test searches with; no solver arrays)."""
    ages = motion.shape[1] - 1
    b = float(snap_up(backlog0, step, points)) * step
    shown_a, run = 0, min(start_run, ages)  # action of the shown frame (0: the pre-plan one)
    q_prev = prev_quality
    total = 0.0
    for j, a in enumerate(actions):
        on_time, left = frame_step(frames, j, b, float(ladder.wire[j, a]))
        penalty = 0.0
        if on_time and ladder.bits[j, a] > 0:
            q = float(ladder.quality[j, a])
            shown_a, run = a, 0
        else:
            # the shown frame is ``run + 1`` slots back (at the cap: taken as ``ages + 1``)
            k = j - 1 - run
            base = float(ladder.quality[k, shown_a]) if shown_a > 0 and k >= 0 \
                else float(start_quality)
            age = min(run + 1, ages)
            q = float(stale_quality(base, motion[j, age]))
            penalty = float(charge[age])
            run = age
        total += weights.quality_w * q - penalty
        if q_prev is not None:
            total -= weights.switch_w * abs(q - q_prev)
        q_prev = q
        b = float(snap_up(left, step, points)) * step
    return total


def motion_rows(table: Sequence[Sequence[float]] | None, k0: int, n: int,
                ages: int) -> np.ndarray | None:
    """``motion[j, a]`` for frames ``k0 .. k0 + n - 1`` from the arm's table (row ``k``:
    the error of frame ``k`` against ``k - 1 .. k - A``); missing ages repeat the last."""
    if table is None or len(table) == 0:
        return None
    out = np.zeros((n, ages + 1))
    for j in range(n):
        row = table[min(k0 + j, len(table) - 1)]
        if len(row) == 0:
            return None
        vals = [float(row[min(a, len(row)) - 1]) for a in range(1, ages + 1)]
        if not all(math.isfinite(v) and v >= 0 for v in vals):
            return None
        out[j, 1:] = vals
    return out


__all__ = ["evaluate_interactive_aged", "first_freezing_run", "motion_rows",
           "solve_interactive_aged",
           "stale_quality", "webrtc_run_charges"]
