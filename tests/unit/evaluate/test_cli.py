"""``diffstream evaluate`` end to end on a few small PNGs, and every bad input (exit 2)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstream.__main__ import main as diffstream_main
from diffstream.codecs import register_codec
from diffstream.content.sources import load_photo
from diffstream.evaluate.cli import main
from diffstream.evaluate.tables import COLUMNS

PHOTOS = ("astronaut", "coffee", "chelsea")
FAST = ["--codecs", "jpeg,webp", "--size", "32", "--bpp", "0.5,1,2,4",
        "--crops-per-image", "1", "--bootstrap", "5", "--no-progress"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        load_photo(name).resize((80, 64), Image.Resampling.LANCZOS).save(folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "out"
    assert main(["--images", str(photos), "--out", str(out), *FAST]) == 0
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_writes_every_output(run):
    assert sorted(p.name for p in run.iterdir()) == ["bd.csv", "rd.csv", "rd.png",
                                                     "summary.md"]
    with Image.open(run / "rd.png") as im:
        assert im.size[0] > 1000


def test_rd_csv_has_every_codec_target_subset_and_the_floor(run):
    rows = _csv(run / "rd.csv")
    assert tuple(rows[0]) == tuple(c for c in COLUMNS if c != "lpips")
    keys = {(r["codec"], r["target_bpp"], r["subset"]) for r in rows if r["codec"] != "real"}
    assert keys == {(c, t, s) for c in ("jpeg", "webp") for t in ("0.5", "1", "2", "4")
                    for s in ("common", "sent")}
    for r in rows:
        if r["codec"] == "real":
            continue
        assert int(r["total"]) == 3 and int(r["sent"]) <= 3
        assert int(r["n"]) <= int(r["sent"])
        if r["subset"] == "sent":
            assert r["n"] == r["sent"]
        if int(r["n"]) > 0:
            assert 0 < float(r["bpp"]) <= float(r["target_bpp"])  # payload within budget
            assert 10 < float(r["psnr_db"]) < 100 and 0 < float(r["ms_ssim"]) <= 1
            assert float(r["swd_ci_low"]) <= float(r["swd"]) <= float(r["swd_ci_high"])
            if int(r["n"]) >= 2:  # two halves to compare
                assert float(r["swd_unpaired"]) > 0
            assert float(r["spectral_ratio"]) > 0
    real = [r for r in rows if r["codec"] == "real"]
    assert {r["subset"] for r in real} == {"common", "all"}
    (overall,) = [r for r in real if r["subset"] == "all"]
    assert overall["n"] == "3" and overall["target_bpp"] == "nan" and float(overall["swd"]) > 0
    # quality rises with the budget (the common subset at 4 bpp vs 0.5 bpp)
    jpeg = {r["target_bpp"]: r for r in rows if r["codec"] == "jpeg" and r["subset"] == "sent"}
    assert float(jpeg["4"]["psnr_db"]) > float(jpeg["0.5"]["psnr_db"]) + 5


def test_bd_csv_against_the_first_codec(run):
    rows = _csv(run / "bd.csv")
    assert list(rows[0]) == ["codec", "anchor", "method", "points", "subset", "items",
                             "bd_rate_pct", "bd_psnr_db", "reason"]
    assert [(r["codec"], r["anchor"], r["method"]) for r in rows] == [
        ("webp", "jpeg", "cubic"), ("webp", "jpeg", "pchip")]
    rd = _csv(run / "rd.csv")
    fixed = [r for r in rd if r["codec"] == "webp" and r["subset"] == "fixed"]
    common = fixed or [r for r in rd
                       if r["codec"] == "webp" and r["subset"] == "common" and int(r["n"]) > 0]
    for r in rows:
        assert int(r["points"]) == len(common)
        assert r["subset"] == ("fixed" if fixed else "common")
        # WebP cannot code a 32x32 crop in 0.5 bpp (512 bits): 3 points, too few for BD
        if len(common) < 4:
            assert r["bd_rate_pct"] == "nan" and "RD points" in r["reason"]
        else:
            assert float(r["bd_rate_pct"]) > -100


def test_summary_has_the_tables_the_command_and_the_seed(run):
    text = (run / "summary.md").read_text()
    assert "| codec | target bpp | n | sent | bpp | PSNR dB | MS-SSIM |" in text
    assert "| jpeg | 4 |" in text and "| webp | 0.5 |" in text and "*real (floor)*" in text
    assert "| codec | method | points | items | BD-rate % | BD-PSNR dB | note |" in text
    assert "Seed: 0." in text and "--codecs jpeg,webp --size 32" in text
    assert "python -m diffstream evaluate" in text


def test_the_same_seed_gives_the_same_table(photos, run, tmp_path):
    out = tmp_path / "again"
    assert main(["--images", str(photos), "--out", str(out), *FAST]) == 0
    assert (out / "rd.csv").read_text() == (run / "rd.csv").read_text()


def test_no_common_subset_warns_and_still_writes_sent_rows(photos, tmp_path, capsys):
    out = tmp_path / "out"
    # 0.01 bpp = 10 bits per 32x32 crop: below every JPEG/WebP floor, so all crops skip
    assert main(["--images", str(photos), "--out", str(out), "--codecs", "jpeg,webp",
                 "--size", "32", "--bpp", "0.01,2", "--crops-per-image", "1", "--bootstrap",
                 "0", "--no-progress"]) == 0
    assert "No common subset at 0.01 bpp" in capsys.readouterr().err
    rows = _csv(out / "rd.csv")
    low = [r for r in rows if r["target_bpp"] == "0.01" and r["subset"] == "sent"]
    assert {(r["codec"], r["n"], r["sent"], r["total"]) for r in low} == {
        ("jpeg", "0", "0", "3"), ("webp", "0", "0", "3")}
    assert "No common subset at 0.01 bpp" in (out / "summary.md").read_text()


def test_dispatched_by_python_m_diffstream(capsys):
    with pytest.raises(SystemExit) as exc:
        diffstream_main(["evaluate", "--help"])
    assert exc.value.code == 0 and "--codec-options" in capsys.readouterr().out


# --- bad input: exit 2, the path (or option) and the reason, nothing encoded -----------


def _fails(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines


def _args(images: Path, out: Path, *extra: str) -> list[str]:
    return ["--images", str(images), "--out", str(out), "--codecs", "jpeg", "--size", "32",
            "--bpp", "1", "--no-progress", *extra]


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _fails(capsys, _args(tmp_path / "empty", tmp_path / "out"))
    assert str(tmp_path / "empty") in err and "no image files" in err
    assert not (tmp_path / "out").exists()


def test_missing_folder(tmp_path, capsys):
    err = _fails(capsys, _args(tmp_path / "nope", tmp_path / "out"))
    assert str(tmp_path / "nope") in err and "not found" in err


def test_unreadable_image_is_named(photos, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes((photos / "coffee.png").read_bytes())
    (folder / "broken.png").write_bytes(b"not a png at all")
    err = _fails(capsys, _args(folder, tmp_path / "out"))
    assert str(folder / "broken.png") in err and "cannot read image" in err


def test_unknown_codec_lists_the_available_ones(photos, tmp_path, capsys):
    argv = _args(photos, tmp_path / "out")
    argv[argv.index("jpeg")] = "jpeg,nosuchcodec"
    err = _fails(capsys, argv)
    assert "nosuchcodec" in err and "available:" in err and "webp" in err and "gic" in err


def test_crop_larger_than_an_image_is_named(photos, tmp_path, capsys):
    argv = _args(photos, tmp_path / "out")
    argv[argv.index("32")] = "72"  # the photos are 80x64
    err = _fails(capsys, argv)
    assert str(photos / "astronaut.png") in err and "80x64" in err and "--size" in err


def test_a_non_empty_out_is_refused_without_overwrite(photos, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me")
    err = _fails(capsys, _args(photos, out))
    assert str(out) in err and "--overwrite" in err
    assert main(_args(photos, out, "--overwrite", "--bootstrap", "0")) == 0
    assert not (out / "old.txt").exists() and (out / "rd.csv").is_file()


@pytest.mark.parametrize(("extra", "needle"), [
    (["--bpp", "0.5,abc"], "'abc' is not a number"),
    (["--bpp", "0,1"], "must be a positive number"),
    (["--size", "big"], "--size big"),
    (["--codec-options", "webp.method=4"], "codec 'webp' is not in --codecs"),
    (["--codec-options", "jpeg.quality=4"], "unexpected keyword argument 'quality'"),
    (["--codec-options", '{"jpeg": 3}'], "give a JSON mapping"),
    (["--codec-options", "jpeg"], "is not codec.option=value"),
])
def test_bad_options(photos, tmp_path, capsys, extra, needle):
    err = _fails(capsys, _args(photos, tmp_path / "out", *extra))
    assert needle in err


@register_codec("test-eval-even")
class EvenOnly:
    """A stand-in codec that, like GIC, refuses some shapes (odd sides here) in min_bits;
    encode would fail the test if the check came after coding started."""

    progressive = False

    def min_bits(self, shape: tuple[int, int]) -> int:
        if shape[0] % 2 or shape[1] % 2:
            raise ValueError(f"sides must be even, got {shape[1]}x{shape[0]}")
        return 8

    def encode(self, image, budget_bits):
        raise AssertionError("encode must not be reached")

    def decode(self, payload, meta, shape):
        raise AssertionError("decode must not be reached")


def test_a_codec_that_cannot_take_the_shape_is_refused_before_coding(photos, tmp_path, capsys):
    argv = _args(photos, tmp_path / "out")
    argv[argv.index("jpeg")] = "jpeg,test-eval-even"
    argv[argv.index("32")] = "33"
    err = _fails(capsys, argv)
    assert "codec test-eval-even cannot code 33x33 images (sides must be even" in err
    assert str(photos) in err and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def lpips_weights(tmp_path_factory) -> Path:
    """A randomly initialised LPIPS (alex) state dict: the format of the real weights."""
    import lpips
    import torch

    torch.manual_seed(0)
    net = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
    path = tmp_path_factory.mktemp("lpips") / "lpips_alex.pth"
    torch.save(net.state_dict(), path)
    return path


def test_missing_lpips_weights(photos, tmp_path, capsys):
    err = _fails(capsys, _args(photos, tmp_path / "out", "--lpips-weights",
                               str(tmp_path / "missing.pth")))
    assert str(tmp_path / "missing.pth") in err and "no such file" in err


def test_ppm_images_are_read(tmp_path):
    folder = tmp_path / "ppm"
    folder.mkdir()
    arr = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(arr).save(folder / "x.ppm")
    from diffstream.evaluate.images import load_folder

    ((name, got),) = load_folder(folder)
    assert name == "x.ppm" and np.array_equal(got, arr)


@pytest.mark.slow
def test_learned_codecs_and_lpips_end_to_end(photos, lpips_weights, tmp_path, capsys):
    """jpeg, lic and gic through the whole command (loads the shipped GIC weights), with an
    LPIPS column from a weights file."""
    out = tmp_path / "out"
    assert main(["--images", str(photos), "--out", str(out), "--codecs", "jpeg,lic,gic",
                 "--size", "32", "--bpp", "0.5,1,2,4", "--crops-per-image", "1",
                 "--bootstrap", "0", "--codec-options", "gic.steps=1", "--no-progress",
                 "--lpips-weights", str(lpips_weights)]) == 0
    rows = _csv(out / "rd.csv")
    assert list(rows[0])[-1] == "lpips"
    jpeg = {r["target_bpp"]: float(r["lpips"]) for r in rows
            if r["codec"] == "jpeg" and r["subset"] == "sent"}
    assert all(v >= 0 for v in jpeg.values()) and jpeg["0.5"] != jpeg["4"]
    assert "| LPIPS |" in (out / "summary.md").read_text()
    # a file that is not LPIPS weights: exit 2 naming it (needs the lpips import: here)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"no weights here")
    assert main(_args(photos, tmp_path / "out2", "--lpips-weights", str(bad))) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(bad) in err and "weights" in err
    common = {(r["codec"], r["target_bpp"]): r for r in rows if r["subset"] == "common"}
    for t in ("1", "2", "4"):
        lic, gic = common[("lic", t)], common[("gic", t)]
        assert int(gic["n"]) > 0
        # one bitstream, two decoders: the same rate control sends the same payloads
        assert lic["bpp"] == gic["bpp"] and lic["sent"] == gic["sent"]
    assert [(r["codec"], r["method"]) for r in _csv(out / "bd.csv")] == [
        ("lic", "cubic"), ("lic", "pchip"), ("gic", "cubic"), ("gic", "pchip")]
    assert "gic (steps=1)" in (out / "summary.md").read_text()
