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

- Trace alignment. Live stream time starts when the receiver says hello; the first frame is
  captured when the receiver has set the stream up, 0.3-1.2 s later. The shaper starts the
  trace at that capture (``TraceShaper.align``), as the simulator starts it at frame 0, and
  the test checks it: the mean link capacity of each 2 s window must agree within 3 %
  (measured: <= 0.6 %, float rounding of delivery opportunities on a window edge; the step
  trace shifted by one frame, 0.1 s: about 10 %). Both modes log a frame's capacity over
  [capture, capture + 1/fps): live once logged it from ``send_s``, which lags the capture
  by the encode and the event loop's wake-up, and on a loaded CI machine (about 0.16 s) a
  2 s window across the 14 s step differed by 16 %.
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
- The receiver's throughput sample is the simulator's (``control.feedback.
  ThroughputEstimator``). Shaped, it is given the emulated link's base delay, as the
  simulator is; what remains is the loopback's own delay (well under a millisecond) in each
  arrival time. (Before both used one estimator, live learnt the base delay as the minimum
  arrival - send, which under shaping holds a whole frame's serialisation: whenever the
  emulated queue ran empty it overestimated the rate many times over, and the rate policy
  asked for max_bpp.)

Tolerances (``TOLERANCES``) were set from repeated runs on the shared 2-core dev machine;
each number says what was measured. A real drift (a policy option or estimator differing
between modes, another share, a misaligned trace) moves at least one of them well outside;
one worth only a few percent of a budget (packet or header overhead) is below the jitter
and is left to unit tests. ``DIFFSTREAM_PARITY_PERTURB`` changes the live side only, to see
the test fail (``live_overrides``).

Reproduce one case by hand: write ``scenario_data("steps", 20)`` to a file, then
``python -m diffstream send --scenario F --shape --arm jpeg-rate --bind tcp://127.0.0.1:5599``
with ``python -m diffstream recv --connect tcp://127.0.0.1:5599``, and
``python -m diffstream run F --arms jpeg-rate``.
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

# Measured with the shared sender/receiver cores and the shaped base delay (two runs, both
# traces, the machine shared with other test runs), then widened by a margin:
#   rate:     budgets within 10 %: 76-100 % of frames; median difference 2-5 %; mean budget
#             0.4-4 % apart; fates agree 96-100 %; delivered 0-4 points apart; same
#             estimate -> budgets within 3 %: 100 % of 33-47 frames.
#   deadline: budgets within 25 %: 70-90 %; median difference 9-14 %; mean budget 0.5-11 %
#             apart; fates agree 94-100 %; delivered 0-4 points apart.
# (Before the modes shared one throughput estimator, the rate arm's fates agreed for only
# 31-52 % of frames and its mean budget was 18-37 % higher live: see the module docstring.)
# Perturbing the live side only (``live_overrides``) failed: rate safety 0.6 (median 20-28 %,
# same-estimate agreement 0 %), rate window 1 (same-estimate agreement 22-36 %), deadline
# burst_frames 1 (mean budget 26-28 % lower). Not caught: deadline safety 0.6 (its budget is
# set by the backlog it keeps, so the mean moved < 10 %) and mtu 800 (packet overhead, ~2 %
# of a budget: below the jitter; that belongs to unit tests).
TOLERANCES: dict[str, Tolerance] = {
    "jpeg-rate": Tolerance(budget_within=0.10, budget_agree_min=0.60,
                           median_budget_rel_max=0.10, mean_budget_rel_max=0.10,
                           fate_agree_min=0.85, delivered_diff_max=0.15,
                           matched_within=0.03, matched_agree_min=0.90),
    "jpeg-deadline": Tolerance(budget_within=0.25, budget_agree_min=0.55,
                               median_budget_rel_max=0.25, mean_budget_rel_max=0.18,
                               fate_agree_min=0.80, delivered_diff_max=0.15,
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
            # the live shaper starts the trace at frame 0's capture, as the simulator does
            sim = run_sim(folder, scenario_data(trace, DURATION_S), arm)
            p = compare(sim, live[arm])
            out[trace, arm] = p
            lines.append(f"{trace:8} {arm:13}: {p.describe()}")
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
