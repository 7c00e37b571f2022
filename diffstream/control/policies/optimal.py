"""The offline optimum: dynamic programming over a whole arm with the true future link.

``oracle`` is the *greedy* clairvoyant bound (per frame the largest budget the link delivers
in time; it can starve the frames after it). ``optimal`` is the best budget sequence for
the whole arm in a model of the link and of the scenario's QoE, found by backward
induction (as Pensieve's ``test/dp.cc`` does for chunks), computed once and then used
closed-loop: every frame looks up the best action for the *real* current state.

**Model** (docs/policies/optimal.md has the derivations; ``optimal_dp`` the solvers):

* Actions: skip (budget 0: the codec's header-only frame), the rungs of a bits-per-pixel
  ladder (``levels_bpp``, default ``n_levels`` geometric rungs from ``min_bpp`` to the
  scenario cap; rungs under the codec's floor are dropped, the codec would skip them), and
  per frame the greedy oracle's budget for that frame along the oracle's own path, so the
  oracle's whole sequence is one of the plans the DP ranks (its optimum is never below the
  oracle's in the model).
* Quality of a slot: ``obs.rate_quality`` (the codec's calibration) at the budget, or MPC's
  fallback log utility; a skipped or late frame's slot repeats the last image, scored as
  MPC scores it (the floor's quality minus ``skip_penalty_db``) and charged one frame
  interval of stall (playback: the rebuffer seconds). Interactive with the content known
  (``obs.future.motion_mse``, ``frame_floors``): the shown image's age joins the state, a
  stale slot's quality decays with the content's motion, freezes follow WebRTC's rule, and
  each frame's own floor is an action (``optimal_aged``).
* Objective: the scenario's ``diffstream`` QoE as a sum of per-frame terms,
  ``Q_j / N - switch_weight * |Q_j - Q_{j-1}| / (N - 1) - stall_weight * stall_j / duration``.
  Other presets are not modelled: their weights default to the diffstream ones.
* Link: the true trace (``OracleView``), FIFO, drop-tail limit included; loss-free, except
  in the aged interactive DP, which maximises the expectation under the link's loss model
  (``OracleView.delivery_prob``, ``plan_loss``) and learns lost frames from the reports
  (``on_report``); payload = budget (codecs fill to ~95 %, so this is
  a slight over-estimate of the bytes); encode/decode times as in the observation.

**State and discretisation.**

* Interactive: the link backlog at the decision, ``backlog_points`` points from 0 to the
  largest window (bytes the link carries in a frame's latency budget: above it every frame
  is late), rounded up; and the previous slot's action (switch term).
* Playback: Pensieve's (time, buffer) as (rebuffer-shifted playout offset, buffer ahead of
  the link) on a grid of ``time_step_s``, the offset over ``max_rebuffer_s`` past its lowest
  reachable value; startup frames have the link-free time only. See ``optimal_dp``.

It is optimal on its grid: ``tests/unit/control/test_policy_optimal.py`` checks the DP
against an exhaustive search over every action sequence. The plan is cached per arm (a
private attribute; a new arm shows as the frame index going back) and recomputed when the
observation's encode/decode estimates move by more than ``recompute_tolerance_s`` (they are
0 before the first encode), when the header size changes the wire bytes, or at a new arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, PrivateAttr, model_validator

from diffstream.control.feedback import DeliveryReport
from diffstream.control.policies.base import (
    Observation,
    OracleView,
    PolicyModel,
    clamp_bits,
    is_playback,
    payload_bits_for_wire_budget,
)
from diffstream.control.policies.mpc import FALLBACK_QUALITY_FLOOR_DB
from diffstream.control.policies.optimal_aged import (
    FREEZE_AVG_WINDOW,
    averaged_run_charges,
    first_freezing_run,
    motion_rows,
    rollout_shown,
    solve_interactive_aged,
    stale_quality,
    webrtc_run_charges,
)
from diffstream.control.policies.optimal_dp import (
    InteractiveFrames,
    Ladder,
    Plan,
    PlaybackFrames,
    Weights,
    backlog_grid_step,
    greedy_interactive,
    greedy_playback,
    interactive_step,
    playback_grid,
    playback_index,
    snap_up,
    solve_interactive,
    solve_playback,
)
from diffstream.control.policies.oracle import OraclePolicy

WIRE_TOLERANCE = 0.02  # relative change of the header-only frame's bytes that forces a replan


@dataclass(frozen=True)
class ArmPlan:
    """One solved arm and what it was solved for (to tell when it is stale)."""

    k0: int
    n: int
    encode_s: float
    decode_s: float
    wire0: float
    min_bits: int
    max_bits: int
    playback: bool
    frames: InteractiveFrames | PlaybackFrames
    ladder: Ladder
    plan: Plan
    ages: int = 0  # > 0: the aged interactive model (``optimal_aged``), its age cap


@dataclass(frozen=True)
class Shown:
    """A frame the model judged shown: its index, plan, action index and quality."""

    k: int
    plan: ArmPlan
    index: int
    quality: float


@dataclass(frozen=True)
class LastAction:
    """What frame ``k`` got: its action index in ``plan`` and its slot's quality."""

    k: int
    plan: ArmPlan
    index: int
    quality: float


class OptimalPolicy(PolicyModel):
    """Whole-arm dynamic programming with the true future (see the module docstring)."""

    needs_future: ClassVar[bool] = True
    needs_rate_quality: ClassVar[bool] = True

    kind: Literal["optimal"] = "optimal"
    levels_bpp: tuple[float, ...] | None = Field(
        None, min_length=1, description="Bits-per-pixel ladder, strictly increasing; null: "
        "n_levels geometric rungs from min_bpp to the scenario cap.")
    n_levels: int = Field(20, ge=1, le=64, description="Rungs of the default ladder.")
    min_bpp: float = Field(0.05, gt=0, description="Lowest rung of the default ladder.")
    backlog_points: int = Field(200, ge=2, le=4096,
                                description="Interactive: grid points of the link backlog.")
    time_step_s: float = Field(
        0.1, gt=0, description="Playback: time grid (Pensieve's DT is 0.05 s on 4 s chunks).")
    max_rebuffer_s: float = Field(
        1.0, ge=0, description="Playback: playout offset (startup + rebuffering) tracked "
        "above its lowest reachable value; beyond it the offset is clamped.")
    skip_penalty_db: float = Field(
        5.0, ge=0, description="A skipped slot's quality: this many dB below the floor's (MPC).")
    recompute_tolerance_s: float = Field(
        0.002, ge=0, description="Replan when the encode or decode estimate moves this much.")
    motion_ages: int = Field(
        12, ge=0, le=32, description="Interactive: track the shown image's age up to this "
        "many slots and score stale slots by the content's motion (0: every stale slot "
        "scores the floor's quality minus skip_penalty_db, as MPC).")

    freeze_iterations: int = Field(
        2, ge=0, le=8, description="Interactive, content known: re-solve this many times "
        "with WebRTC's freeze threshold taken from the average interval along the previous "
        "plan's path (0: the nominal interval, a conservative reading).")
    plan_loss: bool = Field(
        True, description="Interactive, content known: plan expected values under the "
        "link's loss model (a frame of n packets arrives whole with the model's "
        "probability), and learn from the reports which frames were lost.")
    greedy_check: bool = Field(
        True, description="Rerun the arm in the simulation with the greedy oracle's "
        "decisions (same label, codec and seed) and keep whichever run scores the higher "
        "QoE: where the simulator departs from the DP's model (loss draws, the averaged "
        "freeze threshold) a bound must not end below a plan it could have played "
        "(sim/best_run.py). Costs one more run of the arm.")

    _arm: ArmPlan | None = PrivateAttr(default=None)
    _last: LastAction | None = PrivateAttr(default=None)
    _floor: int = PrivateAttr(default=0)
    _shown: list[Shown] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _check_levels(self) -> OptimalPolicy:
        levels = self.levels_bpp
        if levels is not None:
            if any(not (b > 0 and math.isfinite(b)) for b in levels):
                raise ValueError(f"levels_bpp must be positive and finite, got {list(levels)}")
            if any(b1 <= b0 for b0, b1 in zip(levels, levels[1:], strict=False)):
                raise ValueError(f"levels_bpp must be strictly increasing, got {list(levels)}")
        return self

    def exact_alternatives(self) -> list[PolicyModel]:
        """Plans the simulator plays under this arm's identity and keeps if they score
        higher (``sim.best_run``): the greedy oracle's, with ``greedy_check``."""
        return [OraclePolicy()] if self.greedy_check else []

    @property
    def label(self) -> str:
        rungs = len(self.levels_bpp) if self.levels_bpp is not None else self.n_levels
        return f"optimal(DP,L={rungs})" if rungs != 20 else "optimal(DP)"

    # ------------------------------------------------------------------ the ladder
    def ladder_bpp(self, obs: Observation) -> tuple[float, ...]:
        if self.levels_bpp is not None:
            return self.levels_bpp
        top = obs.max_bits / obs.pixels if obs.pixels > 0 else 0.0
        if top <= self.min_bpp or self.n_levels == 1:
            return (max(min(self.min_bpp, top), 1e-9),)
        return tuple(float(b) for b in np.geomspace(self.min_bpp, top, self.n_levels))

    def quality_db(self, obs: Observation, bits: int) -> float:
        """Slot quality of a frame coded at ``bits`` (the codec's curve, else MPC's log
        utility, anchored at the ladder's lowest rung)."""
        bpp = max(bits, 1) / obs.pixels
        if obs.rate_quality is not None:
            return obs.rate_quality.quality_at(bpp)
        return 10.0 * math.log10(bpp / self.ladder_bpp(obs)[0]) + FALLBACK_QUALITY_FLOOR_DB

    def skip_quality_db(self, obs: Observation) -> float:
        return self.quality_db(obs, max(obs.min_bits, 1)) - self.skip_penalty_db

    def rung_bits(self, obs: Observation) -> list[int]:
        """Budgets of the ladder's rungs that the codec can code (floor <= bits), deduped."""
        out: list[int] = []
        for bpp in self.ladder_bpp(obs):
            bits = clamp_bits(obs.bits_for_bpp(bpp), obs)
            if bits > 0 and bits >= obs.min_bits and bits not in out:
                out.append(bits)
        return out

    def _coded(self, obs: Observation, bits: int) -> int:
        """A budget the codec skips is a skip (0 bits)."""
        return bits if bits > 0 and bits >= obs.min_bits else 0

    def _frame_floors(self, obs: Observation, n: int) -> np.ndarray | None:
        """The remaining frames' own floors (``obs.future.frame_floors``; -1: the frame does
        not code at all), or None when the content is not known."""
        floors = obs.future.frame_floors if obs.future is not None else None
        if not floors:
            return None
        k0 = obs.frame_index
        return np.array([int(floors[min(k0 + j, len(floors) - 1)]) for j in range(n)])

    def _ladder(self, obs: Observation, extra: list[int]) -> Ladder:
        """Per-frame actions: skip, the rungs, and ``extra[j]`` (the greedy oracle's); with
        the frames' own floors known, also each frame's floor, and a rung under a frame's
        floor is a skip for that frame (the codec would skip it)."""
        n = len(extra)
        floors = self._frame_floors(obs, n)
        if floors is None:
            rungs = self.rung_bits(obs)
            bits = np.zeros((n, len(rungs) + 2), dtype=np.int64)
            bits[:, 1:-1] = rungs
            bits[:, -1] = [self._coded(obs, b) for b in extra]
        else:
            codable = floors[floors > 0]
            lowest = int(codable.min()) if codable.size else obs.max_bits + 1
            rungs = self.rung_bits(replace(obs, min_bits=lowest))
            bits = np.zeros((n, len(rungs) + 3), dtype=np.int64)
            bits[:, 1] = np.where(floors > 0, floors, 0)
            bits[:, 2:-1] = rungs
            bits[:, -1] = extra
            ok = (floors[:, None] > 0) & (bits >= floors[:, None])
            bits = np.where(ok, bits, 0)
        wire_of = {int(b): obs.wire_bytes(int(b)) for b in np.unique(bits)}
        skip_q = self.skip_quality_db(obs)
        q_of = {int(b): (self.quality_db(obs, int(b)) if b > 0 else skip_q)
                for b in np.unique(bits)}
        wire = np.vectorize(wire_of.__getitem__, otypes=[float])(bits)
        quality = np.vectorize(q_of.__getitem__, otypes=[float])(bits)
        return Ladder(bits=bits, wire=wire, quality=quality)

    def _fill(self, obs: Observation, room_bytes: float) -> int:
        return self._coded(obs, clamp_bits(payload_bits_for_wire_budget(obs, room_bytes), obs))

    # ------------------------------------------------------------------ model inputs
    def weights(self, obs: Observation, future: OracleView) -> Weights:
        total = future.frames_total if future.frames_total is not None else obs.frame_index + 1
        duration = future.duration_s or total * obs.frame_interval_s
        return Weights.diffstream(total, obs.frame_interval_s, duration,
                                  future.switch_weight, future.stall_weight)

    def _remaining(self, obs: Observation, future: OracleView) -> int:
        total = future.frames_total if future.frames_total is not None else obs.frame_index + 1
        return max(1, total - obs.frame_index)

    def interactive_frames(self, obs: Observation, future: OracleView) -> InteractiveFrames:
        """The true link per remaining frame (decision times assume the sender is not
        compute-bound beyond the encode estimate: decision ``j`` is at
        ``max(capture_j, decision_{j-1} + encode_s)``)."""
        assert obs.deadline_s is not None
        n = self._remaining(obs, future)
        cap = future.capacity_bytes
        t_int, enc = obs.frame_interval_s, obs.encode_s
        latency = obs.deadline_s - obs.capture_s
        now = np.empty(n)
        now[0] = obs.now_s
        for j in range(1, n):
            now[j] = max(obs.capture_s + j * t_int, now[j - 1] + enc)
        t0 = now + enc
        t1 = obs.capture_s + np.arange(n) * t_int + latency - future.delay_s - obs.decode_s
        drain_encode = np.array([cap(a, b) for a, b in zip(now, t0, strict=True)])
        drain_after = np.array([cap(t0[j], now[j + 1]) for j in range(n - 1)] + [0.0])
        w_all = np.array([cap(now[j], t1[j]) if t1[j] > t0[j] else -1.0 for j in range(n)])
        w_frame = np.array([cap(t0[j], t1[j]) if t1[j] > t0[j] else -1.0 for j in range(n)])
        limit = future.queue_limit_bytes if future.queue_limit_bytes is not None else math.inf
        return InteractiveFrames(drain_encode, drain_after, w_all, w_frame, limit)

    def playback_frames(self, obs: Observation, future: OracleView) -> PlaybackFrames:
        if future.finish_s is None:
            raise ValueError("the optimal policy in playback needs obs.future.finish_s "
                             "(the link's cumulative-capacity inverse)")
        n = self._remaining(obs, future)
        startup = max(1, math.ceil(future.startup_s / obs.frame_interval_s - 1e-9))
        return PlaybackFrames(
            k0=obs.frame_index, n=n, interval_s=obs.frame_interval_s, encode_s=obs.encode_s,
            fixed_s=future.delay_s + obs.decode_s,
            max_buffer_s=future.max_buffer_s if future.max_buffer_s is not None else math.inf,
            startup_frames=startup, finish_s=future.finish_s,
            capacity_bytes=future.capacity_bytes)

    # ------------------------------------------------------------------ solving
    def _stale(self, arm: ArmPlan | None, obs: Observation) -> bool:
        if arm is None or arm.playback != is_playback(obs):
            return True
        j = obs.frame_index - arm.k0
        last = self._last
        tol = self.recompute_tolerance_s
        return (j < 0 or j >= arm.n or last is None or last.k != obs.frame_index - 1
                or last.plan is not arm
                or abs(obs.encode_s - arm.encode_s) > tol or abs(obs.decode_s - arm.decode_s) > tol
                or abs(obs.wire_bytes(0) - arm.wire0) > WIRE_TOLERANCE * max(arm.wire0, 1.0)
                or obs.min_bits != arm.min_bits or obs.max_bits != arm.max_bits)

    def _prev_quality(self, obs: Observation) -> float | None:
        """The real previous slot's quality (None at the arm's first frame)."""
        last = self._last
        if obs.frame_index == 0 or last is None or last.k != obs.frame_index - 1:
            return None if obs.frame_index == 0 else self.skip_quality_db(obs)
        return self.skip_quality_db(obs) if obs.skip_run > 0 else last.quality

    def solve(self, obs: Observation) -> ArmPlan:
        """Plan every remaining frame of the arm from the real current state."""
        future = obs.future
        assert future is not None
        weights = self.weights(obs, future)
        prev_q = self._prev_quality(obs)
        playback = is_playback(obs)
        if playback:
            frames: InteractiveFrames | PlaybackFrames = self.playback_frames(obs, future)
            assert isinstance(frames, PlaybackFrames)
            start = self._playback_start(obs, future, frames)
            grid = playback_grid(frames, obs.wire_bytes(obs.max_bits), start=start,
                                 step=self.time_step_s, max_rebuffer_s=self.max_rebuffer_s)
            state = playback_index(frames, grid, 0, start)
            extra = greedy_playback(frames, lambda room: self._fill(obs, room),
                                    obs.wire_bytes, grid=grid, state=state)
            ladder = self._ladder(obs, extra)
            plan = solve_playback(frames, ladder, weights, grid=grid, prev_quality=prev_q)
        else:
            frames = self.interactive_frames(obs, future)
            assert isinstance(frames, InteractiveFrames)
            step = backlog_grid_step(frames, self.backlog_points)
            extra = greedy_interactive(frames, lambda room: self._fill(obs, room),
                                       obs.wire_bytes, points=self.backlog_points, step=step,
                                       backlog0=future.backlog_bytes)
            ladder = self._ladder(obs, extra)
            ages = self._ages(obs)
            motion = motion_rows(future.motion_mse, obs.frame_index, ladder.bits.shape[0],
                                 ages) if ages else None
            if motion is not None:
                plan = self._solve_aged(obs, future, frames, ladder, weights, motion, ages)
            else:
                ages = 0
                plan = solve_interactive(frames, ladder, weights, points=self.backlog_points,
                                         prev_quality=prev_q)
            return ArmPlan(k0=obs.frame_index, n=ladder.bits.shape[0], encode_s=obs.encode_s,
                           decode_s=obs.decode_s, wire0=obs.wire_bytes(0),
                           min_bits=obs.min_bits, max_bits=obs.max_bits, playback=False,
                           frames=frames, ladder=ladder, plan=plan, ages=ages)
        return ArmPlan(k0=obs.frame_index, n=ladder.bits.shape[0], encode_s=obs.encode_s,
                       decode_s=obs.decode_s, wire0=obs.wire_bytes(0), min_bits=obs.min_bits,
                       max_bits=obs.max_bits, playback=playback, frames=frames, ladder=ladder,
                       plan=plan)

    # ------------------------------------------------------------------ the aged model
    def _solve_aged(self, obs: Observation, future: OracleView, frames: InteractiveFrames,
                    ladder: Ladder, weights: Weights, motion: np.ndarray, ages: int) -> Plan:
        """The aged DP; with ``freeze_iterations`` the freeze threshold follows WebRTC's
        average interval along the previous plan's own path (a fixed-point iteration:
        the average depends on the plan, which depends on the average)."""
        interval = obs.frame_interval_s
        charge = webrtc_run_charges(interval, ages, weights.stall_w_s)
        shown_q, run = self._shown_state(obs, ages)
        kw = dict(points=self.backlog_points, start_quality=shown_q, start_run=run,
                  prev_quality=self._prev_quality_aged(obs, future, ages),
                  delivered=self._delivered(future, ladder))
        plan = solve_interactive_aged(frames, ladder, weights, motion, charge, **kw)
        ks = [s.k for s in self._shown]
        history = [(b - a) * interval for a, b in zip(ks, ks[1:], strict=False)]
        last = ks[-1] - obs.frame_index if ks else None
        for _ in range(self.freeze_iterations):
            path = rollout_shown(plan, frames, ladder, backlog0=future.backlog_bytes,
                                 start_run=run)
            charge = averaged_run_charges(path, history, interval, ages, weights.stall_w_s,
                                          last_shown=last)
            plan = solve_interactive_aged(frames, ladder, weights, motion, charge, **kw)
        return plan

    def _delivered(self, future: OracleView, ladder: Ladder) -> np.ndarray | None:
        """``P(frame j at action a arrives whole)`` from the link's loss model (None:
        loss-free, or ``plan_loss`` off)."""
        prob = future.delivery_prob
        if not self.plan_loss or prob is None:
            return None
        return np.vectorize(prob, otypes=[float])(ladder.wire)

    def on_report(self, report: DeliveryReport, now_s: float) -> None:
        """A frame that did not arrive whole was not shown: forget it, so the next decision
        looks up the state the viewer is really in (the plan assumed it shown)."""
        del now_s
        if self.plan_loss and report.packets_missing > 0:
            self._shown = [s for s in self._shown if s.k != report.seq]

    def _ages(self, obs: Observation) -> int:
        """The age cap: ``motion_ages``, raised past WebRTC's first freezing run."""
        if self.motion_ages == 0:
            return 0
        return max(self.motion_ages, first_freezing_run(obs.frame_interval_s) + 1)

    def _shown_state(self, obs: Observation, ages: int) -> tuple[float, int]:
        """(quality of the last frame shown, stale slots since it, capped); nothing shown
        yet: the skip quality, and every slot so far stale."""
        if self._shown:
            last = self._shown[-1]
            return last.quality, min(obs.frame_index - 1 - last.k, ages)
        return self.skip_quality_db(obs), min(obs.frame_index, ages)

    def _prev_quality_aged(self, obs: Observation, future: OracleView,
                           ages: int) -> float | None:
        """The real previous slot's quality: fresh, or the shown image aged by the motion."""
        k = obs.frame_index
        if k == 0:
            return None
        q, run = self._shown_state(obs, ages)
        if run == 0:
            return q
        rows = future.motion_mse
        assert rows is not None
        row = rows[min(k - 1, len(rows) - 1)]
        return float(stale_quality(q, row[min(run, len(row)) - 1]))

    def _playback_start(self, obs: Observation, future: OracleView,
                        frames: PlaybackFrames) -> tuple[float, float | None, float]:
        """(link-free time, due time of this frame or None before playback starts, now)."""
        free = future.finish_s(obs.now_s, future.backlog_bytes) if future.finish_s else obs.now_s
        started = obs.frame_index >= frames.startup_frames
        due = obs.now_s + obs.buffer_s + obs.frame_interval_s if started else None
        return (max(free, obs.now_s), due, obs.now_s)

    # ------------------------------------------------------------------ acting
    def _forget_unshown(self, obs: Observation) -> None:
        """A new arm forgets what was shown; a frame the codec skipped was not shown."""
        last = self._last
        if last is None or obs.frame_index <= last.k:
            self._shown = []
        elif obs.skip_run > 0:
            cut = obs.frame_index - obs.skip_run
            self._shown = [s for s in self._shown if s.k < cut]

    def learnt_floor(self, obs: Observation) -> int:
        """The codec's floor as the sender has seen it: ``obs.min_bits`` is a typical floor
        measured on a calibration frame, and real content may need more. When the codec
        skipped a budget at or above the floor (the sender's own log: ``skip_run_max_bits``),
        the floor is raised above it for the rest of the arm (the model would otherwise keep
        planning frames the codec cannot make), which replans."""
        last = self._last
        if obs.future is not None and obs.future.frame_floors:
            return obs.min_bits  # each frame's own floor is known: nothing to learn
        new_arm = last is None or obs.frame_index <= last.k
        floor = obs.min_bits if new_arm else max(self._floor, obs.min_bits)
        if not new_arm and obs.skip_run > 0 and obs.skip_run_max_bits >= max(floor, 1):
            floor = obs.skip_run_max_bits + 1
        self._floor = floor
        return floor

    def budget_bits(self, obs: Observation) -> int:
        future = obs.future
        if future is None:
            raise ValueError(
                "the optimal policy needs obs.future (the link's true future), which only a "
                "simulated session (or a shaped live one) provides; use another policy")
        self._forget_unshown(obs)
        floor = self.learnt_floor(obs)
        if floor != obs.min_bits:
            obs = replace(obs, min_bits=floor)
        arm = self._arm
        if self._stale(arm, obs):
            arm = self.solve(obs)
            self._arm = arm
        assert arm is not None
        j = obs.frame_index - arm.k0
        last = self._last
        prev = 0
        if j > 0 and last is not None and obs.skip_run == 0:
            prev = last.index
        ladder = arm.ladder
        if arm.playback:
            assert isinstance(arm.frames, PlaybackFrames)
            start = self._playback_start(obs, future, arm.frames)
            assert arm.plan.grid is not None
            state = playback_index(arm.frames, arm.plan.grid, j, start)
            a = int(arm.plan.action[(j, *state, prev)])
            shown = ladder.bits[j, a] > 0
        else:
            assert isinstance(arm.frames, InteractiveFrames)
            b = future.backlog_bytes
            idx = int(snap_up(b, arm.plan.step, self.backlog_points))
            if arm.ages:
                _, run = self._shown_state(obs, arm.ages)
                last_shown = self._shown[-1] if self._shown else None
                s = (last_shown.index if last_shown is not None and last_shown.plan is arm
                     else 0)
                a = int(arm.plan.action[j, idx, s, run])
            else:
                a = int(arm.plan.action[j, idx, prev])
            ok, _ = interactive_step(arm.frames, j, np.array(b), ladder.wire[j, a])
            shown = bool(ok) and ladder.bits[j, a] > 0
        eff = a if shown else 0
        if shown:
            self._shown.append(Shown(k=obs.frame_index, plan=arm, index=a,
                                     quality=float(ladder.quality[j, a])))
            del self._shown[:-(FREEZE_AVG_WINDOW + 1)]  # the intervals WebRTC averages
        self._last = LastAction(k=obs.frame_index, plan=arm, index=eff,
                                quality=float(ladder.quality[j, eff]))
        return int(ladder.bits[j, a])


__all__ = ["OptimalPolicy"]
