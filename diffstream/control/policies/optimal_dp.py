"""Backward induction for ``policy: {kind: optimal}``: the model, the solvers, a reference.

Everything here is a pure function of plain arrays (no ``Observation``): ``optimal.py``
builds the arrays from the observation and the true future, these functions solve them,
and the tests compare the solvers with an exhaustive search that uses ``evaluate_*``, a
frame-by-frame implementation of the same model written independently of the vectorised
solvers.

**Actions.** Per frame ``j`` the sender picks one of ``A`` actions: index 0 is a skip (the
codec's header-only frame, ``wire[j, 0]`` bytes, slot quality ``quality[j, 0]``), the others
send ``bits[j, a]`` payload bits as ``wire[j, a]`` on-link bytes with slot quality
``quality[j, a]``. The action set may differ per frame (``optimal.py`` adds the greedy
oracle's budget of each frame as a last action).

**Objective** (the ``diffstream`` QoE as a sum of per-frame terms, :class:`Weights`):
``quality_w * Q_j - switch_w * |Q_j - Q_{j-1}| - stall_w * missed_j``, where ``Q_j`` is the
slot's quality (``quality[j, 0]`` when the frame was skipped or late: the slot repeats the
last image) and ``missed_j`` is 1 for such a slot (one frame interval of stall). Playback
charges ``stall_w_s`` per second of rebuffering instead.

**Interactive state** (:func:`solve_interactive`): the link backlog ``B`` at frame ``j``'s
decision, on the grid ``step * [0, M)`` (a backlog between two points is rounded *up*:
the model never thinks a frame fits that does not), and the previous slot's action (for
the switch term). Frame ``j`` is on time exactly when ``B + wire <= window_all[j]`` and
``wire <= window_frame[j]`` (the FIFO clears it before its last useful instant; the oracle's
rule) and the queue after encode, ``max(0, B - drain_encode[j]) + wire``, fits the drop-tail
limit. Next backlog: ``max(0, min(limit, max(0, B - drain_encode[j]) + wire) -
drain_after[j])``, rounded up to the grid.

**Playback state** (:func:`solve_playback`): Pensieve's (time, buffer), as the pair
``(rho, y)`` on a time grid of ``dt``: frame ``j`` is due to play at ``j * T + rho`` (``rho``
= start of playback + rebuffering so far, so ``rho`` grows by the rebuffer time) and the
link is free from ``j * T + rho - y`` on (``y`` = the playout buffer ahead of the link).
Startup frames (before playback starts) have only the link-free time. See ``solve_playback``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

EPS_BYTES = 1e-6  # byte comparisons: a frame that exactly fills its window is on time
EPS_S = 1e-9


@dataclass(frozen=True)
class Weights:
    """Per-frame weights of the ``diffstream`` QoE over an arm of ``N`` slots of ``T`` s:
    ``quality_w = 1/N``, ``switch_w = switch_weight/(N-1)``, ``stall_w = stall_weight * T /
    duration`` per missed slot, ``stall_w_s = stall_weight / duration`` per stall second."""

    quality_w: float
    switch_w: float
    stall_w: float
    stall_w_s: float

    @classmethod
    def diffstream(cls, n_frames: int, interval_s: float, duration_s: float,
                   switch_weight: float, stall_weight: float) -> Weights:
        n = max(1, n_frames)
        duration = duration_s if duration_s > 0 else n * interval_s
        return cls(quality_w=1.0 / n, switch_w=switch_weight / max(1, n - 1),
                   stall_w=stall_weight * interval_s / duration,
                   stall_w_s=stall_weight / duration)


@dataclass(frozen=True)
class Ladder:
    """Per-frame action set, arrays of shape (n_frames, A); action 0 is the skip."""

    bits: np.ndarray
    wire: np.ndarray
    quality: np.ndarray

    @property
    def n_actions(self) -> int:
        return int(self.bits.shape[1])


@dataclass(frozen=True)
class InteractiveFrames:
    """The true link, per remaining frame (bytes; see the module docstring)."""

    drain_encode: np.ndarray  # link capacity from the decision to the enqueue (encode time)
    drain_after: np.ndarray  # capacity from the enqueue to the next frame's decision
    window_all: np.ndarray  # capacity from the decision to the last useful instant (<0: none)
    window_frame: np.ndarray  # capacity from the enqueue to the last useful instant
    queue_limit: float = math.inf


@dataclass(frozen=True)
class Plan:
    """A solved arm: ``action[j, state..., prev]`` is the best action index at frame ``j``
    (``prev`` indexes frame ``j - 1``'s actions; at ``j = 0`` only ``prev = 0`` is filled:
    the real previous slot, given to the solver); ``start_value[state]`` is the optimum of
    the whole remaining arm from each start state."""

    action: np.ndarray
    start_value: np.ndarray
    step: float  # the grid spacing (bytes interactive, seconds playback)
    grid: PlaybackGrid | None = None


# ---------------------------------------------------------------------- interactive


def backlog_grid_step(frames: InteractiveFrames, points: int) -> float:
    """Grid spacing: ``points`` levels from 0 to the largest useful window (any backlog
    above it makes every frame late, so nothing above it needs telling apart)."""
    top = float(np.max(frames.window_all, initial=0.0))
    return top / (points - 1) if top > 0 and points > 1 else 1.0


def snap_up(b: np.ndarray | float, step: float, points: int) -> np.ndarray:
    """Grid index of a backlog, rounded up (conservative), clamped to the top point."""
    idx = np.ceil(np.asarray(b, dtype=float) / step - 1e-9)
    return np.clip(idx, 0, points - 1).astype(np.int64)


def interactive_step(frames: InteractiveFrames, j: int, backlog: np.ndarray,
                      wire: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(on time, next backlog in bytes) for every backlog x action (broadcast)."""
    after_encode = np.maximum(0.0, backlog - frames.drain_encode[j])
    queued = after_encode + wire
    w_all, w_frame = frames.window_all[j], frames.window_frame[j]
    ok = ((w_all >= 0) & (backlog + wire <= w_all + EPS_BYTES)
          & (wire <= w_frame + EPS_BYTES) & (queued <= frames.queue_limit + EPS_BYTES))
    nxt = np.maximum(0.0, np.minimum(queued, frames.queue_limit) - frames.drain_after[j])
    return ok, nxt


def solve_interactive(frames: InteractiveFrames, ladder: Ladder, weights: Weights, *,
                      points: int, prev_quality: float | None,
                      switch: bool = True) -> Plan:
    """Backward induction over every remaining frame.

    ``prev_quality``: the real previous slot's quality (None: this is the arm's first frame,
    no switch term). ``switch=False`` drops the switch term (only to show that the tests
    notice).
    """
    n, a_n = ladder.bits.shape
    step = backlog_grid_step(frames, points)
    grid = np.arange(points, dtype=float) * step
    value = np.zeros((points, a_n))  # V_{j+1}[backlog index, previous action]
    action = np.zeros((n, points, a_n), dtype=np.int16)
    sw = weights.switch_w if switch else 0.0
    cols = np.arange(a_n)
    for j in range(n - 1, -1, -1):
        q = ladder.quality[j]
        ok, nxt_b = interactive_step(frames, j, grid[:, None], ladder.wire[j][None, :])
        coded = ladder.bits[j][None, :] > 0
        eff = np.where(ok & coded, cols[None, :], 0)  # (M, A) the slot's action
        nxt = snap_up(nxt_b, step, points)
        base = (weights.quality_w * q[eff] - weights.stall_w * (eff == 0)
                + value[nxt, eff])  # (M, A)
        if j > 0:
            q_prev = ladder.quality[j - 1]
        else:
            q_prev = np.array([prev_quality if prev_quality is not None else 0.0])
        w = sw if (j > 0 or prev_quality is not None) else 0.0
        total = base[:, None, :] - w * np.abs(q[eff][:, None, :] - q_prev[None, :, None])
        best = np.argmax(total, axis=2)  # (M, P); ties: the lowest action (the cautious one)
        v = total.max(axis=2)
        if j > 0:
            value = v
            action[j] = best
        else:
            action[j, :, : v.shape[1]] = best
            start = v[:, 0]
    return Plan(action=action, start_value=start, step=step)


def frame_step(frames: InteractiveFrames, j: int, backlog: float, wire: float
               ) -> tuple[bool, float]:
    """(on time, next backlog in bytes, not yet on the grid) of one frame, scalar: the
    reference evaluators' transition, written apart from the solvers' arrays."""
    after_encode = max(0.0, backlog - float(frames.drain_encode[j]))
    queued = after_encode + wire
    on_time = bool(frames.window_all[j] >= 0
                   and backlog + wire <= frames.window_all[j] + EPS_BYTES
                   and wire <= frames.window_frame[j] + EPS_BYTES
                   and queued <= frames.queue_limit + EPS_BYTES)
    return on_time, max(0.0, min(queued, frames.queue_limit) - float(frames.drain_after[j]))


def evaluate_interactive(frames: InteractiveFrames, ladder: Ladder, weights: Weights,
                         actions: Sequence[int], *, points: int, step: float,
                         backlog0: float, prev_quality: float | None) -> float:
    """The model's objective of one action sequence, frame by frame (the reference the
    exhaustive test searches with; written without the solver's arrays)."""
    b = float(snap_up(backlog0, step, points)) * step
    q_prev = prev_quality
    total = 0.0
    for j, a in enumerate(actions):
        on_time, left = frame_step(frames, j, b, float(ladder.wire[j, a]))
        shown = on_time and ladder.bits[j, a] > 0
        q = float(ladder.quality[j, a if shown else 0])
        total += weights.quality_w * q - (0.0 if shown else weights.stall_w)
        if q_prev is not None:
            total -= weights.switch_w * abs(q - q_prev)
        q_prev = q
        b = float(snap_up(left, step, points)) * step
    return total


def greedy_interactive(frames: InteractiveFrames, fill_bits: Callable[[float], int],
                       wire_of: Callable[[int], float], *, points: int, step: float,
                       backlog0: float) -> list[int]:
    """The greedy oracle's budgets on the model's grid: per frame the largest payload whose
    wire bytes fit ``min(window_all - B, window_frame, limit - queue after encode)``
    (``fill_bits`` inverts ``wire_of``), the backlog then advanced like the model's."""
    b = float(snap_up(backlog0, step, points)) * step
    out = []
    for j in range(frames.window_all.size):
        after_encode = max(0.0, b - float(frames.drain_encode[j]))
        room = min(frames.window_all[j] - b, frames.window_frame[j],
                   frames.queue_limit - after_encode)
        bits = fill_bits(room) if frames.window_all[j] >= 0 else 0
        out.append(bits)
        queued = after_encode + wire_of(bits)
        left = max(0.0, min(queued, frames.queue_limit) - float(frames.drain_after[j]))
        b = float(snap_up(left, step, points)) * step
    return out


# ---------------------------------------------------------------------- playback


@dataclass(frozen=True)
class PlaybackFrames:
    """The arm's playback timing from frame ``k0`` on (``n`` frames). ``finish_s(t, n)``:
    when the link, free from ``t``, has carried ``n`` bytes (vectorised);
    ``capacity_bytes(t0, t1)``: bytes it carries in ``[t0, t1)``."""

    k0: int
    n: int
    interval_s: float
    encode_s: float
    fixed_s: float  # one-way delay + decode: from the last byte on the link to ready
    max_buffer_s: float
    startup_frames: int
    finish_s: Callable[..., float | np.ndarray]
    capacity_bytes: Callable[[float, float], float]


@dataclass(frozen=True)
class PlaybackGrid:
    """The (rho, y) grid: ``rho_i = rho0 + i * step`` (the playout offset: frame ``k`` is due
    at ``k * T + rho``), ``y_m = m * step`` (the link is free from ``due - y`` on), and for
    startup frames the link-free time ``c0 + i * step`` (the same index: ``rho0 = c0 +
    fixed_s``, so playback starting when the last startup frame is ready keeps it)."""

    step: float
    c0: float
    now0: float
    rho0: float
    r_points: int
    y_points: int


MAX_RHO_POINTS = 2000  # a cap on the startup span of the grid (a very slow start clamps)


def playback_grid(frames: PlaybackFrames, max_wire: float, *, start: tuple[float, float | None,
                  float], step: float, max_rebuffer_s: float) -> PlaybackGrid:
    """The grid for a plan from ``start = (link free, due time or None, now)``."""
    free, due, now = start
    extra = math.ceil(max_rebuffer_s / step - 1e-9) + 1
    if due is not None:  # playback running: offset from the real due time
        rho0, span = due - frames.k0 * frames.interval_s, 0
    else:  # startup: the slowest startup (every frame at the largest action) bounds the span
        rho0 = free + frames.fixed_s
        t = free
        for j in range(max(0, min(frames.n, frames.startup_frames - frames.k0))):
            t = float(frames.finish_s(max(t, now + (j + 1) * frames.encode_s), max_wire))
        span = min(MAX_RHO_POINTS, math.ceil((t - free) / step - 1e-9) + 1)
    # the buffer ahead of the link: at most what the sender may request (no limit: the
    # whole arm, which no fetch can get ahead by)
    y_max = max(min(frames.max_buffer_s - frames.encode_s,
                    frames.n * frames.interval_s + frames.fixed_s + max_rebuffer_s), 0.0)
    return PlaybackGrid(step=step, c0=free, now0=now, rho0=rho0, r_points=span + extra,
                        y_points=math.floor(y_max / step + 1e-9) + 1)


def _up(x: np.ndarray | float, step: float, points: int) -> np.ndarray:
    return np.clip(np.ceil(np.asarray(x) / step - 1e-9), 0, points - 1).astype(np.int64)


def _down(x: np.ndarray | float, step: float, points: int) -> np.ndarray:
    return np.clip(np.floor(np.asarray(x) / step + 1e-9), 0, points - 1).astype(np.int64)


def playback_index(frames: PlaybackFrames, grid: PlaybackGrid, j: int,
                   start: tuple[float, float | None, float]) -> tuple[int, int]:
    """The grid state of a real situation at frame ``j`` of the plan (rounded the
    conservative way: offset and link-free time up, buffer ahead of the link down)."""
    step = grid.step
    free, due, _ = start
    k = frames.k0 + j
    if k < frames.startup_frames or due is None:
        return int(_up(free - grid.c0, step, grid.r_points)), 0
    rho = due - k * frames.interval_s
    # a buffer above the grid's top is the top: the sender waits until it is (the gating)
    return (int(_up(rho - grid.rho0, step, grid.r_points)),
            int(_down(due - free, step, grid.y_points)))


def playback_advance(frames: PlaybackFrames, grid: PlaybackGrid, j: int, i: int, m: int,
                     wire: float) -> tuple[int, int, float]:
    """One frame of the gridded playback model, scalar: (next i, next m, stall charged).

    Startup frame ``k``: the link starts it at ``max(c_i, now0 + (j + 1) * encode)``; the
    last startup frame starts playback when it is ready. Playing: the frame is due at
    ``D = k T + rho_i``, the link starts it at ``D - y_m`` (``y`` never exceeds
    ``max_buffer - encode``: the sender does not request more than the buffer holds), it is
    ready ``fixed_s`` after its last byte; lateness is rebuffering (rounded up to the grid,
    which shifts the offset), and the next frame's ``y`` is rounded down.
    """
    t, k, dt = frames.interval_s, frames.k0 + j, grid.step
    n0 = frames.startup_frames
    if k < n0:
        s = max(grid.c0 + i * dt, grid.now0 + (j + 1) * frames.encode_s)
        f = float(frames.finish_s(s, wire))
        i2 = int(_up(f - grid.c0, dt, grid.r_points))
        if k < n0 - 1:
            return i2, 0, 0.0
        due_next = (k + 1) * t + grid.rho0 + i2 * dt
        return i2, int(_down(due_next - f, dt, grid.y_points)), 0.0
    rho = grid.rho0 + i * dt
    due = k * t + rho
    f = float(frames.finish_s(due - m * dt, wire))
    stall = max(0.0, f + frames.fixed_s - due)
    i2 = int(_up(rho + stall - grid.rho0, dt, grid.r_points))
    charged = max(grid.rho0 + i2 * dt - rho, stall)
    due_next = (k + 1) * t + grid.rho0 + i2 * dt
    return i2, int(_down(due_next - f, dt, grid.y_points)), charged


def solve_playback(frames: PlaybackFrames, ladder: Ladder, weights: Weights, *,
                   grid: PlaybackGrid, prev_quality: float | None,
                   switch: bool = True) -> Plan:
    """Backward induction over (offset, buffer, previous action) for every remaining frame;
    the same rules as ``playback_advance``, vectorised over states and actions."""
    n, a_n = ladder.bits.shape
    r_n, y_n, dt, t = grid.r_points, grid.y_points, grid.step, frames.interval_s
    value = np.zeros((r_n, y_n, a_n))
    action = np.zeros((n, r_n, y_n, a_n), dtype=np.int8 if a_n < 128 else np.int16)
    sw = weights.switch_w if switch else 0.0
    cols = np.arange(a_n)
    ii = np.arange(r_n)[:, None, None]
    mm = np.arange(y_n)[None, :, None]
    start = np.zeros((r_n, y_n))
    for j in range(n - 1, -1, -1):
        k = frames.k0 + j
        q, wire = ladder.quality[j], ladder.wire[j]
        eff = np.where(ladder.bits[j] > 0, cols, 0)  # (A,): playback shows every arrival
        if k < frames.startup_frames:
            s = np.maximum(grid.c0 + np.arange(r_n) * dt, grid.now0 + (j + 1) * frames.encode_s)
            f = np.asarray(frames.finish_s(s[:, None], wire[None, :]))  # (R, A)
            i2 = _up(f - grid.c0, dt, r_n)
            if k < frames.startup_frames - 1:
                m2 = np.zeros_like(i2)
            else:
                m2 = _down((k + 1) * t + grid.rho0 + i2 * dt - f, dt, y_n)
            base = weights.quality_w * q[eff][None, :] + value[i2, m2, eff[None, :]]
            base = np.broadcast_to(base[:, None, :], (r_n, y_n, a_n))  # y is unused here
        else:
            d_idx = np.arange(-(y_n - 1), r_n)  # i - m: the link's start on the dt lattice
            s = k * t + grid.rho0 + d_idx * dt
            f_lat = np.asarray(frames.finish_s(s[:, None], wire[None, :]))  # (R+Y-1, A)
            f = f_lat[ii - mm + y_n - 1, cols[None, None, :]]  # (R, Y, A)
            rho = grid.rho0 + ii * dt
            due = k * t + rho
            stall = np.maximum(0.0, f + frames.fixed_s - due)
            i2 = _up(rho + stall - grid.rho0, dt, r_n)
            charged = np.maximum(grid.rho0 + i2 * dt - rho, stall)
            m2 = _down((k + 1) * t + grid.rho0 + i2 * dt - f, dt, y_n)
            base = (weights.quality_w * q[eff][None, None, :] - weights.stall_w_s * charged
                    + value[i2, m2, np.broadcast_to(eff, i2.shape)])
        if j > 0:
            q_prev = ladder.quality[j - 1]
        else:
            q_prev = np.array([prev_quality if prev_quality is not None else 0.0])
        w = sw if (j > 0 or prev_quality is not None) else 0.0
        total = base[:, :, None, :] - w * np.abs(q[eff][None, None, None, :]
                                                 - q_prev[None, None, :, None])
        best = np.argmax(total, axis=3)  # (R, Y, P)
        v = total.max(axis=3)
        if j > 0:
            value = v
            action[j] = best
        else:
            action[j, :, :, :1] = best
            start = v[:, :, 0]
    return Plan(action=action, start_value=start, step=dt, grid=grid)


def evaluate_playback(frames: PlaybackFrames, ladder: Ladder, weights: Weights,
                      actions: Sequence[int], *, grid: PlaybackGrid, state: tuple[int, int],
                      prev_quality: float | None) -> float:
    """The gridded playback model's objective of one action sequence (scalar reference)."""
    i, m = state
    q_prev = prev_quality
    total = 0.0
    for j, a in enumerate(actions):
        coded = ladder.bits[j, a] > 0
        q = float(ladder.quality[j, a if coded else 0])
        i, m, stall = playback_advance(frames, grid, j, i, m, float(ladder.wire[j, a]))
        total += weights.quality_w * q - weights.stall_w_s * stall
        if q_prev is not None:
            total -= weights.switch_w * abs(q - q_prev)
        q_prev = q
    return total


def greedy_playback(frames: PlaybackFrames, fill_bits: Callable[[float], int],
                    wire_of: Callable[[int], float], *, grid: PlaybackGrid,
                    state: tuple[int, int]) -> list[int]:
    """The greedy oracle's budgets along its own path in the gridded model: the largest
    payload ready by the frame's due time (startup: one interval after its decision, as
    the oracle's ``buffer_s + T`` with an empty buffer)."""
    i, m = state
    t, dt = frames.interval_s, grid.step
    out = []
    for j in range(frames.n):
        k = frames.k0 + j
        if k < frames.startup_frames:
            s = max(grid.c0 + i * dt, grid.now0 + (j + 1) * frames.encode_s)
            due = grid.now0 + j * frames.encode_s + t
        else:
            due = k * t + grid.rho0 + i * dt
            s = due - m * dt
        room = frames.capacity_bytes(s, due - frames.fixed_s) if due - frames.fixed_s > s else -1.0
        bits = fill_bits(room)
        out.append(bits)
        i, m, _ = playback_advance(frames, grid, j, i, m, wire_of(bits))
    return out
