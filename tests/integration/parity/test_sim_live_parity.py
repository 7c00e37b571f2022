"""Parity between the simulator and live mode: the guard that the two modes stay one.

The same scenario (``tests/support/parity.py``: 128x128 JPEG at 10 fps, interactive, 300 ms
target, ``compute: profile cpu-2core``, trace x share 0.2 = 200 kbit/s, 30 ms delay, 20 kB
drop-tail queue, no random loss) on a constant trace and on a step trace (200 -> 60 -> 200
kbit/s at 7 s and 14 s), for the rate and the deadline policy, 20 s each, is

- simulated (``run_scenario``, one arm per run), and
- streamed live over 127.0.0.1 (``python -m diffstream send --shape`` / ``recv``, no CURVE),
  the sender pushing every frame through the simulator's link model and releasing it to the
  socket when that link would have delivered it. The two arms of one trace stream at once
  (two sender/receiver pairs), so the four live streams take about 2 x 30 s.

Then, frame by frame (paired by seq), ``compare`` measures how often the budgets agree, how
often the fates (``live.accounting.fate``: delivered / late / lost, computed the same way for
the simulated records) agree, the mean budget and the delivered fraction on each side, and,
on the frames where both senders held the same throughput estimate (within 1 %), whether the
policy chose the same budget from it.

What real sockets change, and what the test does about it:

- Trace alignment. Live stream time (and trace time) starts when the receiver says hello;
  the first frame is captured when the receiver has set the stream up, 0.3-1.2 s later
  (``capture_s`` of live frame 0). The simulator captures frame 0 at trace time 0. The test
  simulates with ``trace.offset_s`` = that delay, so frame k sees the same trace in both
  modes, and checks it: the mean link capacity of each 2 s window must agree within 12 %
  (measured: <= 8 %; the trace shifted by 0.5 s: >= 20 %). Shorter windows are noisy: live
  logs a frame's capacity from its ``send_s``, the simulator from its ``capture_s``, and at
  60 kbit/s one 1500-byte delivery opportunity is 20 % of a second's capacity.
- Reverse path. Live shaping delays only the forward path; reports return over real
  loopback (~0.1 ms). The scenario says ``feedback_delay_ms: 0`` so the simulator models
  the same reverse delay (its default, ``delay_ms``, would add 30 ms to every RTT).
- Compute time. Live mode charges measured time whatever the scenario says
  (``live.schema`` forces ``compute: measured``): JPEG encodes take 4-25 ms here on a busy
  2-core machine against the profile's 0.4 ms, so live frames enter the link later, and the
  deadline policy's encode estimate is larger.
- Scheduling jitter. The sender's event loop wakes up to a few ms late for captures and
  releases, and the receiver's clock-offset estimate (same host: ~0 with a bound of a few
  tenths of a ms) enters the arrival times. Throughput samples, hence budgets, differ by a
  few percent in steady state; the deadline policy's budget oscillates frame to frame with
  its backlog estimate, so a phase shift of one frame makes single frames differ by 20-50 %
  even when the averages agree.
- The receiver's throughput estimator (``live/receiver.py`` ``_throughput``) is not the
  simulator's (``control/feedback.py`` ``throughput_sample``): it gives no sample for the
  first 8 frames (so the senders use ``startup_bpp`` until then: the simulator for frame 0
  only, live for frames 0-7), and it learns the path's base delay as the minimum arrival -
  send, which under shaping includes a whole frame's serialisation (a shaped frame arrives
  at once, at its last packet's time). Whenever the emulated queue runs empty, it
  overestimates the rate many times over (up to bytes / 0.5 ms; the first live estimate is
  1-11 Mbit/s on this 200 kbit/s link); the rate policy then asks for max_bpp for a few
  frames, the queue fills, and frames are late for seconds while it drains. This is a
  real divergence, not socket noise: it is why the rate arms' outcome tolerances (fates,
  delivered %, mean budget) are wide here; their decision check (same estimate -> same
  budget) and median budget difference stay tight.

Tolerances (``TOLERANCES``) were set from repeated runs on the shared 2-core dev machine;
each number says what was measured. A real drift (a policy option or estimator differing
between modes, another share, a misaligned trace) moves at least one of them well outside;
one worth only a few percent of a budget (packet or header overhead) is below the jitter
and is left to unit tests. ``DIFFSTREAM_PARITY_PERTURB`` changes the live side only, to see
the test fail (``live_overrides``).

Reproduce one case by hand: write ``scenario_data("steps", 20)`` to a file, then
``python -m diffstream send --scenario F --shape --arm jpeg-rate --bind tcp://127.0.0.1:5599``
with ``python -m diffstream recv --connect tcp://127.0.0.1:5599``, and
``python -m diffstream run F --arms jpeg-rate`` with ``trace.offset_s`` set to live frame 0's
``capture_s``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from tests.support.parity import (
    ARMS,
    TRACES,
    Parity,
    Tolerance,
    compare,
    run_live,
    run_sim,
    scenario_data,
    write_scenario,
)

DURATION_S = 20.0

# Measured over six runs (ranges over both traces; the machine shared with other test
# runs, load ~5 on 2 cores), then widened by a margin:
#   rate:     budgets within 10 %: 50-64 % of frames; median difference 4-10 %; mean budget
#             live 18-37 % above sim; fates agree 31-52 %; delivered sim 71-100 %, live
#             14-50 % (50-69 points apart); same estimate -> budgets within 3 %: 78-100 % of
#             21-40 frames. The outcome numbers are this wide because of the receiver's
#             estimator (module docstring, last point): they guard against getting worse,
#             not parity; the decision check and the median carry the rate arm.
#   deadline: budgets within 25 %: 45-72 %; median difference 11-30 %; mean budget 1-10 %
#             apart; fates agree 75-88 %; delivered 11-25 points apart.
# Perturbing the live side only (``live_overrides``) failed: rate safety 0.6 (median 20-28 %,
# same-estimate agreement 0 %), rate window 1 (same-estimate agreement 22-36 %), deadline
# burst_frames 1 (mean budget 26-28 % lower). Not caught: deadline safety 0.6 (its budget is
# set by the backlog it keeps, so the mean moved < 10 %) and mtu 800 (packet overhead, ~2 %
# of a budget: below the jitter; that belongs to unit tests).
TOLERANCES: dict[str, Tolerance] = {
    "jpeg-rate": Tolerance(budget_within=0.10, budget_agree_min=0.40,
                           median_budget_rel_max=0.15, mean_budget_rel_max=0.50,
                           fate_agree_min=0.20, delivered_diff_max=0.85,
                           matched_within=0.03, matched_agree_min=0.60),
    "jpeg-deadline": Tolerance(budget_within=0.25, budget_agree_min=0.35,
                               median_budget_rel_max=0.40, mean_budget_rel_max=0.18,
                               fate_agree_min=0.65, delivered_diff_max=0.35,
                               # its budget also depends on the backlog and delay estimates:
                               # the same throughput estimate does not fix it
                               matched_agree_min=0.0),
}

CASES = [(trace, arm) for trace in TRACES for arm in ARMS]


def live_overrides() -> dict[str, Any]:
    """Scenario changes for the live side only (empty: the same scenario). Set
    ``DIFFSTREAM_PARITY_PERTURB`` to a YAML mapping to see the test fail, e.g.
    ``{arms: [{codec: jpeg, policy: {kind: rate, safety: 0.6}}, {codec: jpeg, policy:
    {kind: deadline, safety: 0.6}}]}``."""
    raw = os.environ.get("DIFFSTREAM_PARITY_PERTURB", "")
    if not raw:
        return {}
    import yaml

    data = yaml.safe_load(raw)
    assert isinstance(data, dict), "DIFFSTREAM_PARITY_PERTURB must be a YAML mapping"
    return data


@pytest.fixture(scope="module")
def parity(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Parity]:
    """Stream and simulate every case once; the comparison per (trace, arm)."""
    t0 = time.monotonic()
    out: dict[tuple[str, str], Parity] = {}
    lines = []
    for trace in TRACES:
        folder = tmp_path_factory.mktemp(f"parity-{trace}")
        live_path = write_scenario(folder / "live.yaml", scenario_data(
            trace, DURATION_S, **live_overrides()))
        live = run_live(folder, live_path, ARMS)
        for arm in ARMS:
            start = live[arm][0].capture_s  # trace time of live frame 0
            sim = run_sim(folder, scenario_data(trace, DURATION_S, offset_s=start), arm)
            p = compare(sim, live[arm])
            out[trace, arm] = p
            lines.append(f"{trace:8} {arm:13} trace offset {start:.3f} s: {p.describe()}")
    lines.append(f"parity runs took {time.monotonic() - t0:.0f} s")
    report = "\n".join(lines)
    print("\n" + report)
    (tmp_path_factory.getbasetemp() / "parity.txt").write_text(report + "\n")
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("trace", "arm"), CASES, ids=[f"{t}-{a}" for t, a in CASES])
def test_sim_and_live_agree(parity: dict[tuple[str, str], Parity], trace: str,
                            arm: str) -> None:
    p = parity[trace, arm]
    assert p.n == int(DURATION_S * 10), p.describe()
    failures = TOLERANCES[arm].failures(p)
    assert not failures, f"{trace}/{arm}: " + "; ".join(failures) + f"\n{p.describe()}"
