"""Synthetic traces: exact simple shapes, the seeded Markov model and its documented stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffstream.netsim.loaders import load_trace
from diffstream.netsim.synthetic import (
    LTE_LIKE,
    MarkovParams,
    constant,
    main,
    markov_cellular,
    markov_path,
    steps,
    trace_stats,
    write_mahimahi,
)

SHIPPED = Path(__file__).resolve().parents[3] / "scenarios" / "traces" / "lte_like.down"


def test_constant_12mbps_is_one_packet_per_ms() -> None:
    tr = constant(12, 1.0)
    assert tr.opportunities_ms.tolist() == list(range(1, 1001))
    assert tr.period_ms == 1000.0 and tr.mean_bps == 12e6


def test_constant_5mbps_hand_computed() -> None:
    # 625 B/ms: packet k completes at 2.4k ms -> first whole ms 3, 5, 8, 10, 12, ...
    tr = constant(5, 1.0)
    assert tr.opportunities_ms[:5].tolist() == [3, 5, 8, 10, 12]
    assert tr.n == 416 and tr.period_ms == 1000.0  # floor(625 000 / 1500)


def test_steps_hand_computed() -> None:
    tr = steps([(0.0, 12.0), (0.5, 0.0), (0.75, 1.2)], 1.0)
    opp = tr.opportunities_ms
    assert opp[:500].tolist() == list(range(1, 501))
    assert opp[500:].tolist() == list(range(760, 1001, 10))  # 150 B/ms from 750 ms
    with pytest.raises(ValueError):
        steps([(1.0, 5.0)], 10.0)
    with pytest.raises(ValueError):
        steps([(0.0, 5.0), (0.0, 1.0)], 10.0)
    with pytest.raises(ValueError):
        steps([(0.0, 0.0)], 10.0)  # zero capacity


def test_markov_is_seeded() -> None:
    a, b = markov_cellular(3, 60.0), markov_cellular(3, 60.0)
    assert np.array_equal(a.opportunities_ms, b.opportunities_ms)
    assert not np.array_equal(
        markov_cellular(4, 60.0).opportunities_ms[:1000], a.opportunities_ms[:1000]
    )
    assert a.period_ms == 60000.0


def test_stationary_distribution_matches_docstring() -> None:
    pi = LTE_LIKE.stationary()
    assert np.round(pi * 100, 1).tolist() == [13.8, 42.0, 29.9, 12.0, 2.4]
    assert LTE_LIKE.stationary_mean_mbps() == pytest.approx(5.21, abs=0.005)


def test_documented_statistics_hold_over_a_long_draw() -> None:
    duration = 2000.0
    path = markov_path(0, duration)
    visits = path.visit_durations_s[path.states == 4]
    assert 0.011 <= visits.sum() / duration <= 0.035  # documented 2.2 % [1.1, 3.4]
    assert 1.0 <= visits.mean() <= 2.1  # documented 1.6 s [1.0, 2.0]
    st = trace_stats(markov_cellular(0, duration))
    assert st.mean_mbps == pytest.approx(5.21, rel=0.15)
    assert 0.6 <= st.cv <= 0.8  # documented 0.69 [0.66, 0.75]
    assert 0.01 <= st.outage_fraction <= 0.034
    assert 1.3 <= st.mean_outage_s <= 2.6
    assert st.n_outages > 10


def test_markov_params_validation() -> None:
    with pytest.raises(ValueError, match="zero diagonal"):
        MarkovParams(("a", "b"), (1.0, 0.0), (1.0, 1.0), ((0.5, 0.5), (1.0, 0.0)))
    with pytest.raises(ValueError, match="rows summing to 1"):
        MarkovParams(("a", "b"), (1.0, 0.0), (1.0, 1.0), ((0.0, 0.9), (1.0, 0.0)))
    with pytest.raises(ValueError, match="dwell"):
        MarkovParams(("a", "b"), (1.0, 0.0), (0.0, 1.0), ((0.0, 1.0), (1.0, 0.0)))


def test_trace_stats_on_a_hand_made_outage() -> None:
    st = trace_stats(steps([(0.0, 12.0), (1.0, 0.0), (3.0, 12.0)], 4.0))
    # opportunities at 1..1000 and 3001..4000: one gap of 2.001 s
    assert st.n_outages == 1 and st.max_outage_s == pytest.approx(2.001)
    assert st.mean_mbps == pytest.approx(6.0)
    counts = np.array([999, 1, 0, 999])  # per 1 s bin: ms 1..999, 1000, none, 3001..3999
    assert st.cv == pytest.approx(counts.std() / counts.mean(), rel=1e-12)


def test_write_mahimahi_round_trip(tmp_path: Path) -> None:
    tr = constant(5, 1.0)
    out = tmp_path / "c.down"
    written = write_mahimahi(tr, out)
    back = load_trace(out, "mahimahi")
    assert out.read_text().splitlines()[:3] == ["3", "5", "8"]
    assert np.array_equal(back.opportunities_ms, tr.opportunities_ms)
    assert back.period_ms == written.period_ms == 999.0  # mahimahi loops at the last line
    with pytest.raises(ValueError, match="scaled"):
        write_mahimahi(tr.scaled(0.5), out)


def test_cli_reproduces_the_shipped_trace(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} not generated yet")
    out = tmp_path / "lte.down"
    assert main(["markov", "--seed", "7", "--duration", "300", "--out", str(out)]) == 0
    assert out.read_bytes() == SHIPPED.read_bytes()
    assert "mean 5.42 Mbit/s" in capsys.readouterr().out


def test_shipped_trace_properties() -> None:
    if not SHIPPED.exists():
        pytest.skip(f"{SHIPPED} not generated yet")
    assert SHIPPED.stat().st_size < 2_000_000
    st = trace_stats(load_trace(SHIPPED, "mahimahi"))
    assert 4.0 <= st.mean_mbps <= 8.0
    assert st.n_outages >= 1 and 1.0 <= st.max_outage_s <= 3.0


def test_cli_constant_steps_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    c = tmp_path / "c.down"
    assert main(["constant", "--mbps", "12", "--duration", "2", "--out", str(c)]) == 0
    assert load_trace(c, "mahimahi").n == 2000
    s = tmp_path / "s.down"
    assert main(["steps", "--steps", "0:12,1:6", "--duration", "2", "--out", str(s)]) == 0
    assert load_trace(s, "mahimahi").n == 1500
    assert main(["constant", "--mbps", "0", "--duration", "2", "--out", str(c)]) == 2
    assert "zero capacity" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["steps", "--steps", "0-5", "--duration", "2", "--out", str(s)])
    assert e.value.code == 2
