"""Trace representation and loaders: exact capacities on hand-written and real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffstream.errors import TraceFormatError
from diffstream.netsim.loaders import load_trace
from diffstream.netsim.trace import Trace

TRACES = Path(__file__).resolve().parents[3].parent / "shared" / "traces"


def _shared(sub: str) -> Path:
    d = TRACES / sub
    if not d.is_dir():
        pytest.skip(f"real traces not available: {d} is missing (../shared is optional)")
    return d


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------- Trace itself
@pytest.fixture
def small(tmp_path: Path) -> Trace:
    # opportunities 0,0,1,3,5 with period 5: loop 1 adds 5,5,6,8,10, so ms 5 has three
    return load_trace(_write(tmp_path, "small.down", "0\n0\n\n1\n3\n5\n"), "mahimahi")


def test_mahimahi_small_schedule(small: Trace) -> None:
    assert small.opportunities_ms.tolist() == [0, 0, 1, 3, 5]
    assert small.period_ms == 5.0
    assert small.duration_s == 0.005
    assert small.mean_bps == 5 * 1500 * 8 / 0.005
    assert small.name == "small.down"


def test_wrap_keeps_the_doubled_opportunity_at_the_period(small: Trace) -> None:
    times_ms = small.opportunity_time_s(np.arange(10)) * 1000
    assert np.allclose(times_ms, [0, 0, 1, 3, 5, 5, 5, 6, 8, 10], atol=1e-12)
    assert small.opportunity_time_s(7) == pytest.approx(0.006, abs=1e-15)
    assert small.capacity_bytes(0.005, 0.0051) == 3 * 1500  # end of loop 0 + two at 0
    assert small.capacity_bytes(0.0, 0.005) == 4 * 1500
    assert small.capacity_bytes(0.005, 0.010) == 5 * 1500
    assert small.capacity_bytes(0.0, 0.0051) == 7 * 1500
    assert small.capacity_bytes(0.003, 0.003) == 0.0
    assert small.capacity_bps(0.0, 0.005) == 4 * 1500 * 8 / 0.005


def test_first_opportunity_at_or_after(small: Trace) -> None:
    assert small.first_opportunity_at_or_after(0.0) == 0
    assert small.first_opportunity_at_or_after(0.0005) == 2
    assert small.first_opportunity_at_or_after(0.001) == 2  # at the opportunity itself
    assert small.first_opportunity_at_or_after(0.005) == 4
    assert small.first_opportunity_at_or_after(0.0051) == 7
    assert small.first_opportunity_at_or_after(0.0501) == 10 * 5 + 2
    with pytest.raises(ValueError):
        small.first_opportunity_at_or_after(-1.0)


def test_scaled_and_shifted(small: Trace) -> None:
    half = small.scaled(0.5)
    assert half.bytes_per_opportunity == 750.0
    assert half.mean_bps == small.mean_bps / 2
    assert half.capacity_bytes(0.0, 0.005) == 4 * 750
    sh = small.shifted(0.002)
    assert sh.opportunities_ms.tolist() == [1, 3, 3, 3, 4]
    assert sh.period_ms == 5.0
    assert small.shifted(0.0) is small
    assert small.shifted(0.007).opportunities_ms.tolist() == [1, 3, 3, 3, 4]  # wraps
    with pytest.raises(ValueError):
        small.scaled(0.0)


def test_rate_series_exact(tmp_path: Path) -> None:
    tr = load_trace(_write(tmp_path, "p", "0 12\n1 6\n2 0\n3 1.2\n"), "pensieve")
    starts, bps = tr.rate_series(1.0, 4.0)
    assert starts.tolist() == [0.0, 1.0, 2.0, 3.0]
    # [0,1): ms 1..999; [1,2): ms 1000 and 1002..1998; [2,3): ms 2000; [3,4): 3010..3990
    assert bps.tolist() == [999 * 12000.0, 500 * 12000.0, 1 * 12000.0, 99 * 12000.0]


def test_trace_rejects_bad_schedules() -> None:
    with pytest.raises(ValueError):
        Trace(np.array([]), 10.0)
    with pytest.raises(ValueError):
        Trace(np.array([3.0, 1.0]), 10.0)
    with pytest.raises(ValueError):
        Trace(np.array([1.0, 12.0]), 10.0)
    with pytest.raises(ValueError):
        Trace(np.array([1.0]), 0.0)


# --------------------------------------------------------------------------- mahimahi errors
@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ("0\n5\nabc\n", ":3:", "expected an integer millisecond, got 'abc'"),
        ("0\n5\n4\n", ":3:", "expected a timestamp >= 5 (the previous line), got 4"),
        ("0\n-2\n", ":2:", "expected a timestamp >= 0 ms, got -2"),
        ("0\n0\n", ":2:", "expected a last timestamp > 0"),
        ("\n\n", "", "expected trace data, got an empty file"),
    ],
)
def test_mahimahi_errors(tmp_path: Path, text: str, where: str, what: str) -> None:
    p = _write(tmp_path, "bad.down", text)
    with pytest.raises(TraceFormatError) as e:
        load_trace(p, "mahimahi")
    assert str(e.value).startswith(f"{p}{where}")
    assert what in str(e.value)


def test_unknown_format_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="unknown trace format"):
        load_trace(tmp_path / "x", "xml")  # type: ignore[arg-type]
    with pytest.raises(TraceFormatError, match="cannot read trace file"):
        load_trace(tmp_path / "missing.down", "mahimahi")


# --------------------------------------------------------------------------- pensieve
def test_pensieve_hand_computed(tmp_path: Path) -> None:
    # 12 Mbit/s = 1500 B/ms for 1 s, 6 Mbit/s for 1 s, 0 for 1 s, 1.2 Mbit/s for the last
    # row, which holds for the median spacing (1 s): 1000 + 500 + 0 + 100 opportunities
    tr = load_trace(_write(tmp_path, "p", "0 12\n1 6\n2 0\n3 1.2\n"), "pensieve")
    opp = tr.opportunities_ms
    assert tr.n == 1600 and tr.period_ms == 4000.0
    assert opp[:3].tolist() == [1, 2, 3] and opp[999] == 1000
    assert opp[1000:1003].tolist() == [1002, 1004, 1006] and opp[1499] == 2000
    assert opp[1500:1502].tolist() == [3010, 3020] and opp[-1] == 4000
    assert tr.n * 1500 == 1.5e6 + 0.75e6 + 0.15e6  # the integral, exactly
    assert tr.capacity_bytes(2.001, 3.001) == 0.0  # the zero-rate second
    assert tr.mean_bps == 1600 * 1500 * 8 / 4.0


def test_pensieve_time_zero_is_the_first_row(tmp_path: Path) -> None:
    tr = load_trace(_write(tmp_path, "p", "10 12\n11 12\n"), "pensieve")
    assert tr.n == 2000 and tr.period_ms == 2000.0 and tr.opportunities_ms[0] == 1.0


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("0 1\n1 2\n2 3\n3 4\n4 5\n5 6\nabc\n", 7, "expected two numbers 't_s Mbit/s', got 'abc'"),
        ("0 1\n1 2 3\n", 2, "expected two numbers 't_s Mbit/s', got '1 2 3'"),
        ("0 1\n2 1\n1 1\n", 3, "expected a time after 2 s, got 1 s; times must increase"),
        ("0 1\n1 -3\n", 2, "expected a rate >= 0, got -3"),
        ("0 1\n1 nan\n", 2, "expected finite numbers"),
    ],
)
def test_pensieve_errors(tmp_path: Path, text: str, line: int, what: str) -> None:
    p = _write(tmp_path, "norway_bus_1", text)
    with pytest.raises(TraceFormatError) as e:
        load_trace(p, "pensieve")
    assert str(e.value).startswith(f"{p}:{line}: {what}")


def test_pensieve_whole_file_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceFormatError, match="empty file"):
        load_trace(_write(tmp_path, "e", ""), "pensieve")
    with pytest.raises(TraceFormatError, match="at least two rows"):
        load_trace(_write(tmp_path, "one", "0 5\n"), "pensieve")
    with pytest.raises(TraceFormatError, match="zero capacity"):
        load_trace(_write(tmp_path, "zero", "0 0\n1 0\n2 0\n"), "pensieve")


# --------------------------------------------------------------------------- csv
@pytest.mark.parametrize(
    ("unit", "scale"), [("mbps", 1.0), ("kbps", 1e3), ("bps", 1e6)]
)
def test_csv_units(tmp_path: Path, unit: str, scale: float) -> None:
    p = _write(tmp_path, "c.csv", f"time_s,rate\n0,{12 * scale:g}\n\n1,{6 * scale:g}\n")
    tr = load_trace(p, "csv", csv_unit=unit)  # type: ignore[arg-type]
    assert tr.n == 1500 and tr.period_ms == 2000.0  # 1.5e6 + 0.75e6 bytes
    assert tr.opportunities_ms[999] == 1000 and tr.opportunities_ms[1000] == 1002


def test_csv_errors(tmp_path: Path) -> None:
    good = _write(tmp_path, "c.csv", "0,1\n1,1\n")
    with pytest.raises(TraceFormatError, match="set csv_unit"):
        load_trace(good, "csv")
    with pytest.raises(TraceFormatError) as e:
        load_trace(_write(tmp_path, "h.csv", "0,1\nfoo,bar\n"), "csv", csv_unit="mbps")
    assert ":2: expected 'time_s,rate' (two numbers), got 'foo,bar'" in str(e.value)
    with pytest.raises(TraceFormatError, match=r":3: expected a time after 1 s"):
        load_trace(_write(tmp_path, "m.csv", "t,r\n1,1\n0.5,1\n"), "csv", csv_unit="kbps")


# --------------------------------------------------------------------------- sabre
SABRE = """[
  {"duration_ms": 1000, "bandwidth_kbps": 12000, "latency_ms": 20},
  {"duration_ms": 500, "bandwidth_kbps": 6000, "latency_ms": 40}
]
"""


def test_sabre_hand_computed_and_latency(tmp_path: Path) -> None:
    tr = load_trace(_write(tmp_path, "s.json", SABRE), "sabre")
    assert tr.n == 1000 + 250 and tr.period_ms == 1500.0
    assert tr.opportunities_ms[1000] == 1002 and tr.opportunities_ms[-1] == 1500
    assert tr.latency is not None
    assert [tr.latency.at(t) for t in (0.5, 1.2, 1.7)] == [20.0, 40.0, 20.0]
    sh = tr.shifted(1.2)
    assert sh.latency is not None
    # new [0, 0.3) = old [1.2, 1.5); new [0.3, 1.3) = old [0, 1); new [1.3, 1.5) = old [1, 1.2)
    got = [sh.latency.at(t) for t in (0.0, 0.29, 0.31, 1.29, 1.31, 1.49, 1.51)]
    assert got == [40.0, 40.0, 20.0, 20.0, 40.0, 40.0, 40.0]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ('[\n  {"duration_ms": 1}\n  {"a": 1}\n]', 3, "expected valid JSON"),
        (SABRE.replace(', "latency_ms": 40', ""), 3, "missing ['latency_ms']"),
        (SABRE.replace('"bandwidth_kbps": 6000', '"bandwidth_kbps": "x"'), 3, "expected a number"),
        (SABRE.replace('"duration_ms": 1000', '"duration_ms": 0'), 2, "duration_ms > 0"),
        (SABRE.replace("12000", "-1"), 2, "bandwidth_kbps >= 0"),
        ('{"duration_ms": 1}', 1, "expected a non-empty JSON list"),
        ("[]", 1, "expected a non-empty JSON list"),
        ("[\n 5\n]", 2, "expected an object"),
    ],
)
def test_sabre_errors(tmp_path: Path, text: str, line: int, what: str) -> None:
    p = _write(tmp_path, "s.json", text)
    with pytest.raises(TraceFormatError) as e:
        load_trace(p, "sabre")
    assert str(e.value).startswith(f"{p}:{line}: ")
    assert what in str(e.value)


def test_sabre_zero_capacity_and_empty(tmp_path: Path) -> None:
    zero = SABRE.replace("12000", "0").replace("6000", "0")
    with pytest.raises(TraceFormatError, match="zero capacity"):
        load_trace(_write(tmp_path, "z.json", zero), "sabre")
    with pytest.raises(TraceFormatError, match="empty file"):
        load_trace(_write(tmp_path, "e.json", "  \n"), "sabre")


# --------------------------------------------------------------------------- real mahimahi
README_MBPS = {  # /work/shared/traces/README.md
    "Verizon-LTE-short.down": 5.0,
    "Verizon-LTE-short.up": 6.0,
    "TMobile-LTE-short.down": 16.7,
    "TMobile-LTE-short.up": 13.3,
    "ATT-LTE-driving-2016.down": 4.6,
    "ATT-LTE-driving-2016.up": 1.9,
}


def _expected_count(raw: np.ndarray, t0_ms: float, t1_ms: float) -> int:
    """Lines in [t0, t1), looping with period = last line, counted loop by loop from 0."""
    period = raw[-1]
    total = 0
    for k in range(max(0, int(t0_ms // period) - 1), int(t1_ms // period) + 1):
        shifted = raw + k * period
        total += int(np.count_nonzero((shifted >= t0_ms) & (shifted < t1_ms)))
    return total


@pytest.mark.parametrize("name", sorted(README_MBPS))
def test_real_mahimahi_capacity(name: str) -> None:
    path = _shared("mahimahi") / name
    raw = np.array([int(s) for s in path.read_text().split()], dtype=np.int64)
    tr = load_trace(path, "mahimahi")
    assert tr.n == raw.size and tr.period_ms == raw[-1]
    mbps = raw.size * 1500 * 8 / raw[-1] / 1000
    assert tr.mean_bps / 1e6 == pytest.approx(mbps, rel=1e-12)
    # README rounds: 2-3 significant digits (Verizon .up counts 5.95 Mbit/s, listed as 6.0)
    assert tr.mean_bps / 1e6 == pytest.approx(README_MBPS[name], rel=0.01)
    p = float(raw[-1])
    rng = np.random.default_rng(0)
    windows = [(0, 1000), (p - 500, p + 500), (p - 0.5, p + 0.5), (2 * p - 10, 2 * p + 10)]
    starts, widths = rng.uniform(0, 3 * p, 20), rng.uniform(1, p, 20)
    windows += [(a, a + w) for a, w in zip(starts, widths, strict=True)]
    for t0, t1 in windows:
        want = _expected_count(raw, t0, t1) * 1500.0
        assert tr.capacity_bytes(t0 / 1000, t1 / 1000) == want, (t0, t1)
    # [0, 3P) holds loops 0 and 1 whole and loop 2 without its opportunities at P
    want = (3 * raw.size - int(np.sum(raw == raw[-1]))) * 1500.0
    assert tr.capacity_bytes(0, 3 * p / 1000) == want


def test_real_mahimahi_doubled_opportunity_at_period() -> None:
    path = _shared("mahimahi") / "Verizon-LTE-short.down"
    raw = np.array([int(s) for s in path.read_text().split()])
    assert raw[0] == 0 and raw[-1] == 140000
    tr = load_trace(path, "mahimahi")
    at_period = np.sum(raw == 140000) + np.sum(raw == 0)
    assert tr.capacity_bytes(140.0, 140.001) == at_period * 1500.0


def test_real_shift_matches_window_arithmetic() -> None:
    tr = load_trace(_shared("mahimahi") / "Verizon-LTE-short.down", "mahimahi")
    sh = tr.shifted(37.25)
    assert sh.n == tr.n
    for a, b in [(0.0, 1.0), (10.0, 150.0), (102.0, 103.5), (0.0, 280.0)]:
        assert sh.capacity_bytes(a, b) == tr.capacity_bytes(a + 37.25, b + 37.25)


# --------------------------------------------------------------------------- real rate traces
def _integral(starts_ms: np.ndarray, rates_bpms: np.ndarray, end_ms: float):
    """Cumulative bytes B(t) of a piecewise-constant rate (bytes per ms), as a function."""
    t = np.append(starts_ms, end_ms)
    cum = np.concatenate([[0.0], np.cumsum(rates_bpms * np.diff(t))])
    return lambda x: np.interp(x, t, cum)


def _check_rate_trace(tr: Trace, starts_ms: np.ndarray, bpms: np.ndarray, end_ms: float) -> None:
    b = _integral(starts_ms, bpms, end_ms)
    total = float(b(end_ms))
    # a full period carries the integral to within one opportunity (never more)
    assert total - 1500 < tr.n * 1500 <= total + 1e-6
    p_s = tr.duration_s
    assert tr.capacity_bytes(p_s, 2 * p_s) == tr.n * 1500  # any full loop after the first
    # sub-windows: opportunity at whole ms m carries the bytes of (m-1, m], so [t0, t1)
    # holds the integral over [t0 - 1 ms, t1 - 1 ms) to within one opportunity
    rng = np.random.default_rng(1)
    for _ in range(30):
        t0 = float(rng.integers(1, int(end_ms) - 1))
        t1 = float(rng.integers(int(t0) + 1, int(end_ms) + 1))
        cap = tr.capacity_bytes(t0 / 1000, t1 / 1000)
        assert abs(cap - (b(t1 - 1) - b(t0 - 1))) <= 1500 + 1e-6, (t0, t1)


@pytest.mark.parametrize("prefix", ["norway_", "fcc_"])
def test_real_pensieve_capacity(prefix: str) -> None:
    files = sorted(_shared("pensieve").glob(prefix + "*"))
    assert files, f"no {prefix}* files"
    for path in files:
        rows = np.loadtxt(path, ndmin=2)
        t_ms = (rows[:, 0] - rows[0, 0]) * 1000
        end_ms = t_ms[-1] + float(np.median(np.diff(t_ms)))
        tr = load_trace(path, "pensieve")
        assert tr.period_ms == np.ceil(end_ms - 1e-6)
        _check_rate_trace(tr, t_ms, rows[:, 1] * 1e6 / 8000, end_ms)


def test_real_sabre_capacity() -> None:
    files = sorted(_shared("sabre-4g").glob("*.json"))
    assert files
    for path in files:
        periods = json.loads(path.read_text())
        dur = np.array([p["duration_ms"] for p in periods], dtype=float)
        kbps = np.array([p["bandwidth_kbps"] for p in periods], dtype=float)
        starts = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
        tr = load_trace(path, "sabre")
        assert tr.period_ms == dur.sum()
        assert tr.latency is not None and tr.latency.at(0.0) == periods[0]["latency_ms"]
        _check_rate_trace(tr, starts, kbps * 1e3 / 8000, float(dur.sum()))
