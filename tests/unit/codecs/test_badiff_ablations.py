"""benchmarks/badiff_ablations.py: Table 3 verdicts from bench_badiff JSONs (issue 16)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _script():  # noqa: ANN202 - the benchmark script as a module
    spec = importlib.util.spec_from_file_location(
        "badiff_ablations", ROOT / "benchmarks" / "badiff_ablations.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["badiff_ablations"] = mod
    spec.loader.exec_module(mod)
    return mod


def _bench_json(path: Path, swd: float, msssim: float, steps: tuple[float, float, float],
                samples: int = 256) -> Path:
    def cell(v: float) -> dict[str, float]:
        return {r: v for r in ("low", "med", "high")}

    def ci(v: float, w: float) -> dict[str, list[float]]:
        return {r: [v - w, v + w] for r in ("low", "med", "high")}

    data: dict[str, Any] = {
        "swd": {"badiff": cell(swd)}, "swd_ci": {"badiff": ci(swd, 10.0)},
        "msssim": {"badiff": cell(msssim)}, "msssim_ci": {"badiff": ci(msssim, 0.02)},
        "bpp_error": {"badiff": cell(0.02)}, "bpp_error_ci": {"badiff": ci(0.02, 0.001)},
        "skip_rate": {"badiff": cell(0.0)},
        "steps": {"badiff": dict(zip(("low", "med", "high"), steps, strict=True))},
        "meta": {"samples": samples, "seeds": [1000, 1000 + samples - 1], "size": 32,
                 "regimes": {"low": [0.2, 0.5]}, "full_steps": 100, "real_images": "k"},
    }
    path.write_text(json.dumps(data))
    return path


def test_verdicts_follow_the_intervals_and_the_direction(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    mod = _script()
    full = _bench_json(tmp_path / "full.json", 400.0, 0.70, (60.0, 80.0, 85.0))
    worse = _bench_json(tmp_path / "a.json", 450.0, 0.71, (90.0, 90.0, 90.0))
    better = _bench_json(tmp_path / "b.json", 300.0, 0.80, (50.0, 70.0, 85.0))
    out = tmp_path / "t.json"
    assert mod.main(["--full", str(full), "--ablation", f"nocond={worse}",
                     "--ablation", f"nohinge={better}", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    a, b = res["ablations"]["nocond"], res["ablations"]["nohinge"]
    assert a["swd"]["low"]["verdict"] == "apart, worse"  # higher SWD, intervals apart
    assert a["msssim"]["low"]["verdict"] == "overlap"  # 0.71 +- 0.02 against 0.70 +- 0.02
    assert b["swd"]["med"]["verdict"] == "apart, better"
    assert b["msssim"]["high"]["verdict"] == "apart, better"  # higher MS-SSIM is better
    assert res["full"]["adaptation"] == pytest.approx(1 - 60 / 85)
    assert a["adaptation"] == pytest.approx(0.0)
    assert "nohinge" in capsys.readouterr().out


def test_touching_intervals_overlap() -> None:
    mod = _script()
    assert mod.verdict([1.0, 2.0], [2.0, 3.0], 2.5, 1.5, True) == "overlap"
    assert mod.verdict([1.0, 2.0], [2.01, 3.0], 2.5, 1.5, True) == "apart, worse"


def test_runs_of_other_requests_are_refused(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    mod = _script()
    full = _bench_json(tmp_path / "full.json", 400.0, 0.70, (60.0, 80.0, 85.0))
    other = _bench_json(tmp_path / "a.json", 400.0, 0.70, (60.0, 80.0, 85.0), samples=64)
    assert mod.main(["--full", str(full), "--ablation", f"nocal={other}"]) == 2
    err = capsys.readouterr().err
    assert "meta.samples is 64" in err and "256" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"swd": {"cascade-lic": {}}, "meta": {}}))
    assert mod.main(["--full", str(full), "--ablation", f"nocal={bad}"]) == 2
    assert "no method 'badiff'" in capsys.readouterr().err
    assert mod.main(["--full", str(full), "--ablation", "nocal"]) == 2
    assert "NAME=JSON" in capsys.readouterr().err
