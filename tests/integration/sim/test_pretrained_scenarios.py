"""Scenarios whose arms run GIC, DiffC and BADiff on pretrained diffusers folders.

The folder checks (``check_options``, via the scenario precheck) run at ``load_scenario``,
before any worker: fast. The end-to-end runs start the two worker processes, which load
the tiny models from disk like any user's: slow (interpreter + torch start-up, 10-30 s).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console

from diffstream.codecs.diffc.schedule import CALIBRATION_FILE
from diffstream.errors import ConfigError
from diffstream.scenario.load import load_scenario
from diffstream.sim.session import RunOptions, run_scenario
from tests.conftest import tiny_scenario
from tests.support.tiny_diffusers import save_badiff_weights, save_gic_weights, save_ldm

pytestmark = pytest.mark.skipif(not CALIBRATION_FILE.is_file(),
                                reason="no shipped DiffC calibration")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    save_ldm(root / "ldm")
    save_ldm(root / "sd", conditional=True)
    save_gic_weights(root / "ldm", root / "gic")
    return root


def _arms(models: Path) -> list[dict]:
    diffc = {"chunk_bits": 8, "max_steps": 6, "ddim_steps": 5, "device": "cpu"}
    return [
        {"codec": "gic", "name": "gic-vae", "policy": {"kind": "rate"},
         "codec_options": {"vae": str(models / "ldm"), "weights": str(models / "gic"),
                           "device": "cpu"}},
        {"codec": "diffc", "name": "diffc-ldm", "policy": {"kind": "rate"},
         "codec_options": {"model": str(models / "ldm"), **diffc}},
        {"codec": "diffc", "name": "diffc-sd", "policy": {"kind": "rate"},
         "codec_options": {"model": str(models / "sd"), **diffc,
                           "null_embedding": str(models / "sd" / "null_embedding.safetensors")}},
    ]


def _scenario(tmp_path: Path, arms: list[dict], **over: object) -> Path:
    return tiny_scenario(tmp_path, duration_s=1.0, frame={"width": 32, "height": 32, "fps": 10},
                         mode={"kind": "interactive", "target_latency_ms": 2000},
                         arms=arms, **over)


def test_precheck_accepts_the_folders(models, tmp_path):
    sc, _ = load_scenario(_scenario(tmp_path, _arms(models)))
    assert [a.label for a in sc.arms] == ["gic-vae", "diffc-ldm", "diffc-sd"]


@pytest.mark.parametrize("arm, breakage, message", [
    (1, lambda m: shutil.rmtree(m / "ldm" / "unet"), "unet/ is missing"),
    (1, lambda m: (m / "ldm" / "scheduler" / "scheduler_config.json").unlink(),
     "scheduler_config.json is missing"),
    (2, lambda m: (m / "sd" / "null_embedding.safetensors").unlink(), "no such file"),
    (0, lambda m: (m / "gic" / "gic.json").unlink(), "gic.json is missing"),
    (0, lambda m: shutil.rmtree(m / "ldm" / "vae"), "neither config.json"),
])
def test_broken_folders_fail_at_load_with_file_line_and_path(models, tmp_path, arm, breakage,
                                                             message):
    copy = shutil.copytree(models, tmp_path / "m")
    breakage(copy)
    path = _scenario(tmp_path, _arms(copy))
    with pytest.raises(ConfigError, match=message) as exc:
        load_scenario(path)
    text = str(exc.value)
    assert text.startswith(f"{path}:") and f"arms[{arm}].codec_options" in text
    assert str(copy) in text


def _quiet() -> Console:
    return Console(file=open("/dev/null", "w"), width=160)  # noqa: SIM115


@pytest.mark.slow
def test_pretrained_arms_run_end_to_end(models, tmp_path):
    res = run_scenario(_scenario(tmp_path, _arms(models)),
                       RunOptions(live_dashboard=False, console=_quiet()))
    for arm in ("gic-vae", "diffc-ldm", "diffc-sd"):
        recs = res.records[arm]
        assert len(recs) == 10, arm
        assert not any(r.error for r in recs), [r.error for r in recs if r.error]
        sent = [r for r in recs if not r.skipped]
        assert all(r.payload_bytes * 8 <= r.budget_bits for r in sent), arm
        decoded = [r for r in sent if r.decoded]
        assert len(decoded) >= 5, arm  # 32x32 frames decoded by the receiver worker
        assert all(r.psnr_db is not None for r in decoded if r.shown), arm


@pytest.mark.slow
def test_badiff_on_an_ldm_runs_end_to_end(models, tmp_path):
    weights = save_badiff_weights(models / "ldm", tmp_path / "badiff")
    arms = [{"codec": "badiff", "name": "badiff-ldm", "policy": {"kind": "rate"},
             "codec_options": {"ldm": str(models / "ldm"), "weights": str(weights),
                               "steps": 8, "device": "cpu"}}]
    path = _scenario(tmp_path, arms, content={"source": "generated", "requests": 3,
                                              "model": str(models / "ldm"), "model_steps": 8},
                     link={"share": 0.2, "delay_ms": 20, "queue": {"bytes": 20000}})
    res = run_scenario(path, RunOptions(live_dashboard=False, console=_quiet()))
    recs = res.records["badiff-ldm"]
    assert len(recs) == 10 and not any(r.error for r in recs)
    sent = [r for r in recs if not r.skipped]
    assert sent and all(r.payload_bytes * 8 <= r.budget_bits for r in sent)
    assert any(r.decoded for r in sent)


# --------------------------------------------------------------------- generated content
@pytest.fixture(scope="module")
def badiff_weights(models: Path, tmp_path_factory) -> Path:
    return save_badiff_weights(models / "ldm", tmp_path_factory.mktemp("badiff") / "w")


def _badiff_arm(models: Path, weights: Path, **opts: object) -> dict:
    return {"codec": "badiff", "name": "badiff-ldm", "policy": {"kind": "rate"},
            "codec_options": {"ldm": str(models / "ldm"), "weights": str(weights),
                              "steps": 8, "device": "cpu", **opts}}


def test_generated_reference_comes_from_content_model(models, badiff_weights, tmp_path):
    """The receiver scores BADiff-on-an-LDM against that LDM's full run, not the pixel DDPM's."""
    from diffstream.codecs.badiff.codec import BADiffCodec
    from diffstream.codecs.badiff.samplers import reference_image
    from diffstream.pipeline.encoder import scenario_content

    content = {"source": "generated", "requests": 2, "model": str(models / "ldm"),
               "model_steps": 8}
    path = _scenario(tmp_path, [_badiff_arm(models, badiff_weights)], content=content)
    sc, spath = load_scenario(path)
    frames = scenario_content(sc, str(spath.parent))
    codec = BADiffCodec(ldm=str(models / "ldm"), weights=str(badiff_weights), steps=8,
                        device="cpu")
    ref = frames.frame(0)
    assert (ref == codec.reference(frames.request(0), (32, 32))).all()
    assert not (ref == reference_image(frames.request(0), (32, 32))).all()


@pytest.mark.parametrize("content_over, arm_over, expect", [
    ({}, {}, "set content.model to the arm's ldm folder"),
    ({"model": "LDM", "model_steps": 8}, {"steps": 12}, "content.model_steps 8"),
    ({"model": "nowhere"}, {}, "content.model: folder 'nowhere' not found"),
])
def test_generated_content_and_generator_must_agree(models, badiff_weights, tmp_path,
                                                    content_over, arm_over, expect):
    content = {"source": "generated", "requests": 2, **content_over}
    if content.get("model") == "LDM":
        content["model"] = str(models / "ldm")
    path = _scenario(tmp_path, [_badiff_arm(models, badiff_weights, **arm_over)],
                     content=content)
    with pytest.raises(ConfigError, match=expect.replace(".", r"\.")):
        load_scenario(path)


def test_pixel_only_generators_refuse_a_content_model(models, tmp_path):
    content = {"source": "generated", "requests": 2, "model": str(models / "ldm")}
    arms = [{"codec": "cascade-lic", "policy": {"kind": "rate"}}]
    with pytest.raises(ConfigError, match="shipped pixel DDPM only"):
        load_scenario(_scenario(tmp_path, arms, content=content))
