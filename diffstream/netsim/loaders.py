"""Read bandwidth traces from files into a :class:`Trace`.

Formats:

- ``mahimahi``: one integer millisecond per line, one 1500-byte opportunity per line.
- ``pensieve`` (Pensieve / FCC / Norway HSDPA): ``t_s Mbit/s`` per line.
- ``sabre``: a JSON list of ``{"duration_ms", "bandwidth_kbps", "latency_ms"}`` periods.
- ``csv``: ``time_s,rate`` rows, optional header line, rate in a unit the caller states.

Rate formats become opportunities through :func:`trace_from_rates` (mahimahi's convention
for rate traces). For ``pensieve`` and ``csv`` each row holds until the next row's time and
the *last* row holds for the median row spacing: the files do not say when the last sample
ends, and the median spacing is what the sampling interval most plausibly was.

Every problem with a file raises :class:`TraceFormatError` whose message starts with
``path:line:`` and says what was expected, what was found and what to do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np

from diffstream.errors import TraceFormatError, located
from diffstream.netsim.trace import PeriodLatency, Trace, trace_from_rates

TraceFormat = Literal["mahimahi", "pensieve", "sabre", "csv"]
CsvUnit = Literal["bps", "kbps", "mbps"]
CSV_UNITS: dict[str, float] = {"bps": 1.0, "kbps": 1e3, "mbps": 1e6}


def load_trace(
    path: str | Path, fmt: TraceFormat, *, csv_unit: CsvUnit | None = None
) -> Trace:
    """Load ``path`` in format ``fmt``; ``csv_unit`` is required for (and only for) csv."""
    if fmt == "mahimahi":
        return load_mahimahi(path)
    if fmt == "pensieve":
        return load_pensieve(path)
    if fmt == "sabre":
        return load_sabre(path)
    if fmt == "csv":
        return load_csv(path, csv_unit)
    raise TraceFormatError(
        located(path, None, f"unknown trace format {fmt!r}; use mahimahi, pensieve, sabre or csv")
    )


# --------------------------------------------------------------------------- helpers
def _read_lines(path: str | Path) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TraceFormatError(located(path, None, f"cannot read trace file: {e}")) from e


def _nonblank(path: str | Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines; empty file is an error."""
    rows = [(i, s.strip()) for i, s in enumerate(_read_lines(path), start=1) if s.strip()]
    if not rows:
        raise TraceFormatError(located(path, None, "expected trace data, got an empty file"))
    return rows


def _name(path: str | Path) -> str:
    return Path(path).name


def _from_rates(
    path: str | Path,
    starts_s: list[float],
    rates_bps: list[float],
    end_s: float,
    latency: PeriodLatency | None = None,
) -> Trace:
    try:
        return trace_from_rates(
            np.array(starts_s),
            np.array(rates_bps),
            end_s,
            name=_name(path),
            source=str(path),
            latency=latency,
        )
    except ValueError as e:
        raise TraceFormatError(
            located(path, None, f"{e}; a trace must carry at least one packet per loop")
        ) from e


def _check_row(path: str | Path, line: int, t: float, rate: float, prev_t: float | None) -> None:
    """Validate one (time, rate) sample; shared by pensieve and csv."""
    if not (math.isfinite(t) and math.isfinite(rate)):
        raise TraceFormatError(located(path, line, "expected finite numbers, got inf/nan"))
    if prev_t is not None and t <= prev_t:
        raise TraceFormatError(
            located(
                path, line,
                f"expected a time after {prev_t:g} s, got {t:g} s; times must increase",
            )
        )
    if rate < 0:
        raise TraceFormatError(
            located(path, line, f"expected a rate >= 0, got {rate:g}; fix or drop the row")
        )


def _rows_to_trace(path: str | Path, times: list[float], rates_bps: list[float]) -> Trace:
    """Rows hold until the next row; the last for the median row spacing."""
    if len(times) < 2:
        raise TraceFormatError(
            located(
                path, None,
                "expected at least two rows (the row spacing sets how long the last row "
                f"holds), got {len(times)}",
            )
        )
    last_hold = float(np.median(np.diff(times)))
    return _from_rates(path, times, rates_bps, times[-1] + last_hold)


# --------------------------------------------------------------------------- formats
def load_mahimahi(path: str | Path) -> Trace:
    """One integer ms per line; non-decreasing, non-negative; the last line is the period."""
    rows = _nonblank(path)
    values: list[int] = []
    prev = 0
    for line, text in rows:
        try:
            ms = int(text)
        except ValueError:
            raise TraceFormatError(
                located(path, line, f"expected an integer millisecond, got {text!r}")
            ) from None
        if ms < 0:
            raise TraceFormatError(
                located(path, line, f"expected a timestamp >= 0 ms, got {ms}")
            )
        if ms < prev:
            raise TraceFormatError(
                located(
                    path, line,
                    f"expected a timestamp >= {prev} (the previous line), got {ms}; "
                    "mahimahi timestamps must be non-decreasing",
                )
            )
        values.append(ms)
        prev = ms
    if values[-1] <= 0:
        raise TraceFormatError(
            located(
                path, rows[-1][0],
                "expected a last timestamp > 0 (it is the period), got 0",
            )
        )
    return Trace(
        np.array(values, dtype=np.float64), float(values[-1]), name=_name(path), source=str(path)
    )


def load_pensieve(path: str | Path) -> Trace:
    """``t_s Mbit/s`` per line (whitespace separated); time 0 is the first row."""
    times: list[float] = []
    rates: list[float] = []
    for line, text in _nonblank(path):
        parts = text.split()
        try:
            if len(parts) != 2:
                raise ValueError
            t, mbps = float(parts[0]), float(parts[1])
        except ValueError:
            raise TraceFormatError(
                located(path, line, f"expected two numbers 't_s Mbit/s', got {text!r}")
            ) from None
        _check_row(path, line, t, mbps, times[-1] if times else None)
        times.append(t)
        rates.append(mbps * 1e6)
    return _rows_to_trace(path, times, rates)


def load_csv(path: str | Path, csv_unit: CsvUnit | None) -> Trace:
    """``time_s,rate`` rows in ``csv_unit``; the first line may be a header."""
    if csv_unit is None:
        raise TraceFormatError(
            located(
                path, None,
                "csv traces need a rate unit: set csv_unit to 'bps', 'kbps' or 'mbps'",
            )
        )
    if csv_unit not in CSV_UNITS:
        raise TraceFormatError(
            located(path, None, f"unknown csv_unit {csv_unit!r}; use 'bps', 'kbps' or 'mbps'")
        )
    scale = CSV_UNITS[csv_unit]
    times: list[float] = []
    rates: list[float] = []
    for k, (line, text) in enumerate(_nonblank(path)):
        parts = [p.strip() for p in text.split(",")]
        try:
            if len(parts) != 2:
                raise ValueError
            t, rate = float(parts[0]), float(parts[1])
        except ValueError:
            if k == 0:
                continue  # a header line
            raise TraceFormatError(
                located(path, line, f"expected 'time_s,rate' (two numbers), got {text!r}")
            ) from None
        _check_row(path, line, t, rate, times[-1] if times else None)
        times.append(t)
        rates.append(rate * scale)
    return _rows_to_trace(path, times, rates)


_SABRE_KEYS = ("duration_ms", "bandwidth_kbps", "latency_ms")


def _element_lines(text: str) -> list[int]:
    """1-based line on which each top-level element of a JSON array starts.

    ``json.loads`` forgets positions; decoding element by element with ``raw_decode``
    recovers them cheaply so errors can name the line of the bad period.
    """
    dec = json.JSONDecoder()
    lines: list[int] = []
    i = text.index("[") + 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return lines
        lines.append(text.count("\n", 0, i) + 1)
        _, i = dec.raw_decode(text, i)


def _sabre_period(path: str | Path, line: int, item: object) -> tuple[float, float, float]:
    if not isinstance(item, dict):
        raise TraceFormatError(
            located(path, line, f"expected an object with keys {_SABRE_KEYS}, got {item!r}")
        )
    missing = [k for k in _SABRE_KEYS if k not in item]
    if missing:
        raise TraceFormatError(
            located(
                path, line, f"expected keys {_SABRE_KEYS}, missing {missing}; add them"
            )
        )
    vals = []
    for k in _SABRE_KEYS:
        v = item[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TraceFormatError(located(path, line, f"expected a number for {k!r}, got {v!r}"))
        vals.append(float(v))
    dur, kbps, lat = vals
    if dur <= 0:
        raise TraceFormatError(located(path, line, f"expected duration_ms > 0, got {dur:g}"))
    if kbps < 0 or lat < 0:
        raise TraceFormatError(
            located(path, line, "expected bandwidth_kbps >= 0 and latency_ms >= 0")
        )
    return dur, kbps, lat


def load_sabre(path: str | Path) -> Trace:
    """Sabre JSON periods played in order; latency kept as ``Trace.latency``."""
    text = "\n".join(_read_lines(path))
    if not text.strip():
        raise TraceFormatError(located(path, None, "expected a JSON list, got an empty file"))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceFormatError(
            located(path, e.lineno, f"expected valid JSON, got: {e.msg} (column {e.colno})")
        ) from None
    if not isinstance(data, list) or not data:
        raise TraceFormatError(
            located(path, 1, "expected a non-empty JSON list of periods, got "
                    f"{type(data).__name__}" + (" (empty)" if data == [] else ""))
        )
    lines = _element_lines(text)
    periods = [_sabre_period(path, ln, item) for ln, item in zip(lines, data, strict=True)]
    dur = np.array([p[0] for p in periods])
    starts_ms = np.concatenate([[0.0], np.cumsum(dur)[:-1]])
    kbps = np.array([p[1] for p in periods])
    lat = np.array([p[2] for p in periods])
    latency = PeriodLatency(starts_ms, lat, float(math.ceil(dur.sum() - 1e-6)))
    return _from_rates(path, starts_ms / 1000.0, kbps * 1e3, dur.sum() / 1000.0, latency)
