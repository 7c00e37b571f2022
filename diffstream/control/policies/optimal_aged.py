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
whole gap, each slot after it one ``T``. libwebrtc averages the last 30 intervals, so in a
stretch of sparse frames it forgives longer runs: :func:`averaged_run_charges` gives each
frame the charges for the average along a given path of shown frames (the policy iterates:
solve, roll the plan out, re-solve with its path's averages; ``freeze_iterations``).

**Loss.** ``delivered[j, a]`` (the loss model's probability that the frame arrives whole)
makes the values expectations; see :func:`solve_interactive_aged`.
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


#: libwebrtc averages the last 30 inter-frame intervals (``metrics.qoe.FREEZE_AVG_WINDOW``)
FREEZE_AVG_WINDOW = 30


def first_freezing_run(interval_s: float, avg_s: float | None = None) -> int:
    """The shortest run of stale slots that WebRTC counts as a freeze when the average
    interval is ``avg_s`` (None: the nominal ``interval_s``): the gap ``(m + 1) T`` exceeds
    ``max(3 avg, avg + 0.15 s)``."""
    avg = interval_s if avg_s is None else avg_s
    threshold = max(FREEZE_FACTOR * avg, avg + FREEZE_MIN_INCREASE_S)
    return math.floor(threshold / interval_s + 1e-9)  # (m + 1) T > threshold


def webrtc_run_charges(interval_s: float, ages: int, stall_w_s: float,
                       avg_s: float | None = None) -> np.ndarray:
    """``charge[m]`` for ``m = 0..ages``: the freeze seconds (times ``stall_w_s``) a stale run
    adds when it reaches length ``m``, under WebRTC's rule with the average interval
    ``avg_s`` (None: the nominal one). ``avg_s`` given and its first freezing run at or past
    the cap: the run is charged at ``ages - 1`` (earlier than WebRTC would: conservative)."""
    first = first_freezing_run(interval_s, avg_s)
    if first >= ages:
        if avg_s is None:
            raise ValueError(
                f"the age cap ({ages}) must exceed the first freezing run ({first})")
        first = ages - 1
    charge = np.zeros(ages + 1)
    charge[first] = (first + 1) * interval_s * stall_w_s
    charge[first + 1:] = interval_s * stall_w_s
    return charge


def averaged_run_charges(shown: Sequence[bool], history: Sequence[float], interval_s: float,
                         ages: int, stall_w_s: float, *,
                         last_shown: int | None = None) -> np.ndarray:
    """``charge[j, m]``: :func:`webrtc_run_charges` per frame, the average taken as WebRTC
    takes it at the start of the stale run through frame ``j`` (the last 30 intervals
    between shown frames up to the one before ``j``), along the path ``shown`` (a plan's
    rollout) after the real ``history`` of intervals (seconds, oldest first);
    ``last_shown``: the real last shown frame's index relative to the plan's first frame
    (negative; None: nothing shown yet)."""
    window = list(history)[-FREEZE_AVG_WINDOW:]
    last = last_shown
    out = np.zeros((len(shown), ages + 1))
    cache: dict[float, np.ndarray] = {}
    for j, on in enumerate(shown):
        avg = round(sum(window) / len(window), 6) if window else interval_s
        if avg not in cache:
            cache[avg] = webrtc_run_charges(interval_s, ages, stall_w_s, avg_s=avg)
        out[j] = cache[avg]
        if on:
            if last is not None:
                window.append((j - last) * interval_s)
                del window[:-FREEZE_AVG_WINDOW]
            last = j
    return out


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


def _best_lossy(x: np.ndarray, q: np.ndarray, w: float, qp: np.ndarray, st_reward: np.ndarray,
                value: np.ndarray, nxt: np.ndarray, r_next: np.ndarray, p_ok: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The best shown action's expected value and its argmax, by ``(b, s, r)``, when frames
    can be lost: ``p (X[b, a] - w |q_a - qp[r, s]|) + (1 - p) (stale[s, r] + V[b'_a, s, r+1])``.
    The loss branch depends on ``a`` and ``s`` together, so the running-maximum split of
    :func:`_best_with_switch` does not apply: this is the direct ``O(M A^2 R)`` maximum,
    built in one (M, A, A_s, R+1) array (the terms without ``b`` are formed once)."""
    miss = value[:, :, r_next][nxt]  # V[b'_a, s, r+1]: (M, A, A_s, R+1)
    miss += st_reward[None, None]
    miss *= (1.0 - p_ok)[None, :, None, None]
    # the hit's switch term has no b: (A, A_s, R+1)
    miss -= (p_ok * w)[:, None, None] * np.abs(q[:, None, None] - qp.T[None, :, :])
    ok = np.isfinite(x)  # the shown actions
    miss += np.where(ok, p_ok[None, :] * np.where(ok, x, 0.0), -np.inf)[:, :, None, None]
    arg = np.argmax(miss, axis=1)
    return np.take_along_axis(miss, arg[:, None], axis=1)[:, 0], arg


def solve_interactive_aged(frames: InteractiveFrames, ladder: Ladder, weights: Weights,
                           motion: np.ndarray, charge: np.ndarray, *, points: int,
                           start_quality: float, start_run: int,
                           prev_quality: float | None,
                           delivered: np.ndarray | None = None) -> Plan:
    """Backward induction over ``(backlog, last shown action, run)``; ``action[j, b, s, r]``.

    ``motion[j, a]`` (``a = 0..R``, column 0 unused) and ``charge[m]`` as in the module
    docstring; ``start_quality``/``start_run``: the real last shown frame's quality and the
    stale slots since it; ``prev_quality``: the real previous slot's quality (None: the
    arm's first frame, no switch term). ``start_value[b]`` is the optimum from
    ``(b, s=0, start_run)``.

    ``delivered[j, a]``: the probability that action ``a``'s frame arrives whole (the loss
    model's, ``OracleView.delivery_prob``; None or all ones: loss-free). With loss the
    values are expectations: a coded frame is shown with that probability, and otherwise its
    bytes still cross the link and its slot is stale (the state the skip leads to, at the
    frame's backlog). The policy then acts on the state it learns from the reports.
    """
    n, a_n = ladder.bits.shape
    ages = motion.shape[1] - 1
    if charge.ndim == 1:
        charge = np.broadcast_to(charge, (n, charge.shape[0]))
    if charge.shape != (n, ages + 1):
        raise ValueError(f"charge needs {ages + 1} entries (per frame), got {charge.shape}")
    step = backlog_grid_step(frames, points)
    grid = np.arange(points, dtype=float) * step
    value = np.zeros((points, a_n, ages + 1))  # V_{j+1}[b, s, r]
    action = np.zeros((n, points, a_n, ages + 1), dtype=np.int8)
    cols = np.arange(a_n)
    r_next = np.minimum(np.arange(ages + 1) + 1, ages)
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
        charge_next = charge[j, r_next]  # (R+1,) by the current run r
        st_reward = (qw * qst - w * np.abs(qst - qp)).T - charge_next[None, :]  # (A_s, R+1)
        v_skip = st_reward[None] + value[nxt[:, 0]][:, :, r_next]  # (M, A_s, R+1)
        # Shown: max_a X[b, a] - w |q_a - p| over the shown actions, for every previous
        # quality p = qp[r, s]: split at p (q_a >= p: (X - w q_a) + w p; q_a < p:
        # (X + w q_a) - w p) and take running maxima over the actions sorted by quality
        x = np.where(shown, qw * q[None, :] + value[nxt, cols[None, :], 0], -np.inf)
        p_ok = None if delivered is None else delivered[j]
        if p_ok is None or bool(np.all(p_ok >= 1.0)):
            f, arg = _best_with_switch(x, q, w, qp.T.reshape(-1))  # (M, A_s * (R+1))
            f = f.reshape(points, a_n, ages + 1)
            arg = arg.reshape(points, a_n, ages + 1)
        else:
            f, arg = _best_lossy(x, q, w, qp, st_reward, value, nxt, r_next, p_ok)
        coded = f > v_skip  # ties: the skip (the cautious one)
        best = np.where(coded, arg, 0)
        v = np.where(coded, f, v_skip)
        action[j] = best
        value = v
        if j == 0:
            start = v[:, 0, min(start_run, ages)]
    return Plan(action=action, start_value=start, step=step)


def _charge_row(charge: np.ndarray, j: int) -> np.ndarray:
    return charge[j] if charge.ndim == 2 else charge


def rollout_shown(plan: Plan, frames: InteractiveFrames, ladder: Ladder, *,
                  backlog0: float, start_run: int) -> list[bool]:
    """Which frames the plan shows when followed from its start state in its own model,
    every coded frame delivered (the path :func:`averaged_run_charges` reads)."""
    n, points, _, r_cap = plan.action.shape
    ages = r_cap - 1
    b, s, r = float(backlog0), 0, min(start_run, ages)
    out = []
    for j in range(n):
        idx = int(snap_up(b, plan.step, points))
        a = int(plan.action[j, idx, s, r])
        on_time, b = frame_step(frames, j, idx * plan.step, float(ladder.wire[j, a]))
        shown = on_time and ladder.bits[j, a] > 0
        s, r = (a, 0) if shown else (s, min(r + 1, ages))
        out.append(bool(shown))
    return out


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
            penalty = float(_charge_row(charge, j)[age])
            run = age
        total += weights.quality_w * q - penalty
        if q_prev is not None:
            total -= weights.switch_w * abs(q - q_prev)
        q_prev = q
        b = float(snap_up(left, step, points)) * step
    return total


def expectimax_interactive_aged(frames: InteractiveFrames, ladder: Ladder, weights: Weights,
                                motion: np.ndarray, charge: np.ndarray,
                                delivered: np.ndarray, *, points: int, step: float,
                                backlog0: float, start_quality: float, start_run: int,
                                prev_quality: float | None) -> float:
    """The aged model's optimum with loss by plain recursion over every action and outcome
    (exponential; the reference the solver is tested against, written without its arrays).
    A frame shown in the model arrives whole with probability ``delivered[j, a]``; lost, its
    slot is stale and its bytes still cross the link."""
    ages = motion.shape[1] - 1
    n, a_n = ladder.bits.shape

    def stale(j: int, shown_a: int, run: int) -> tuple[float, float, int]:
        k = j - 1 - run
        base = float(ladder.quality[k, shown_a]) if shown_a > 0 and k >= 0 \
            else float(start_quality)
        age = min(run + 1, ages)
        return (float(stale_quality(base, motion[j, age])), float(_charge_row(charge, j)[age]),
                age)

    def slot(q: float, penalty: float, q_prev: float | None) -> float:
        switch = 0.0 if q_prev is None else weights.switch_w * abs(q - q_prev)
        return weights.quality_w * q - penalty - switch

    def best(j: int, b: float, shown_a: int, run: int, q_prev: float | None) -> float:
        if j == n:
            return 0.0
        out = -math.inf
        for a in range(a_n):
            on_time, left = frame_step(frames, j, b, float(ladder.wire[j, a]))
            b_next = float(snap_up(left, step, points)) * step
            qs, pen, age = stale(j, shown_a, run)
            v_stale = slot(qs, pen, q_prev) + best(j + 1, b_next, shown_a, age, qs)
            if on_time and ladder.bits[j, a] > 0:
                q = float(ladder.quality[j, a])
                p = float(delivered[j, a])
                v_hit = slot(q, 0.0, q_prev) + best(j + 1, b_next, a, 0, q)
                v = p * v_hit + (1.0 - p) * v_stale
            else:
                v = v_stale
            out = max(out, v)
        return out

    b0 = float(snap_up(backlog0, step, points)) * step
    return best(0, b0, 0, min(start_run, ages), prev_quality)


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


__all__ = ["averaged_run_charges", "evaluate_interactive_aged", "expectimax_interactive_aged",
           "first_freezing_run", "motion_rows", "rollout_shown", "solve_interactive_aged",
           "stale_quality", "webrtc_run_charges"]
