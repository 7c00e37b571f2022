"""Frame sources: pans over scikit-image photos, image folders, scenario specs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffstream.content.sources import (
    SKIMAGE_PHOTOS,
    FrameSource,
    PanSequence,
    folder_sequence,
    make_source,
    pan_sequence,
)
from diffstream.errors import InputError

KODAK = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "kodak"
ROOT = Path(__file__).resolve().parents[3]


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


# --- pans over scikit-image photos ---------------------------------------------------------

@pytest.mark.parametrize("width,height", [(64, 64), (128, 128), (160, 90), (48, 96)])
def test_pan_frames_have_the_right_shape_and_dtype(width: int, height: int) -> None:
    src = pan_sequence(width, height, shot_frames=5)
    assert isinstance(src, FrameSource)
    assert (src.width, src.height) == (width, height)
    assert len(src) == 5 * len(SKIMAGE_PHOTOS)
    for k in (0, 4, 5, 17, len(src) - 1):
        f = src.frame(k)
        assert f.shape == (height, width, 3) and f.dtype == np.uint8
        assert f.flags.writeable and f.std() > 5  # a real picture, not a flat fill


def test_pan_is_deterministic_and_loops() -> None:
    a, b = pan_sequence(64, 64, shot_frames=10), pan_sequence(64, 64, shot_frames=10)
    for k in (0, 3, 11, 79):
        np.testing.assert_array_equal(a.frame(k), b.frame(k))
        np.testing.assert_array_equal(a.frame(k), a.frame(k + len(a)))
        np.testing.assert_array_equal(a.frame(k), a.frame(k + 3 * len(a)))
    f = a.frame(2)
    f[:] = 0  # callers may scribble on their copy
    assert a.frame(2).std() > 5


def _frame_digest() -> str:
    src = pan_sequence(64, 48, shot_frames=7)
    h = hashlib.sha256()
    for k in (0, 6, 7, 30, 55):
        h.update(src.frame(k).tobytes())
    return h.hexdigest()


def test_pan_frames_are_bit_identical_across_processes() -> None:
    code = "from tests.unit.content.test_content import _frame_digest; print(_frame_digest())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == _frame_digest()


def test_consecutive_frames_are_similar_but_shots_differ() -> None:
    src = pan_sequence(64, 64, shot_frames=50)
    within = [mad(src.frame(k), src.frame(k + 1)) for k in range(0, 49, 4)]
    across = [mad(src.frame(50 * s + 49), src.frame(50 * s + 50)) for s in range(4)]
    assert max(within) < 0.6 * min(across), (within, across)
    # Frames far apart in one shot differ more than neighbours: the camera moves.
    assert mad(src.frame(0), src.frame(49)) > 2 * mad(src.frame(0), src.frame(1))
    assert src.shot(49) == 0 and src.shot(50) == 1 and src.shot(len(src)) == 0


@pytest.mark.parametrize("width,height", [(64, 64), (160, 90), (48, 96)])
def test_pan_window_keeps_aspect_and_stays_inside(width: int, height: int) -> None:
    src = PanSequence(width, height, shot_frames=9)
    from diffstream.content.sources import load_photo

    for k in range(len(src)):
        left, top, right, bottom = src.window(k)
        pw, ph = load_photo(src.photos[src.shot(k)]).size
        assert -1e-9 <= left and right <= pw + 1e-9 and -1e-9 <= top and bottom <= ph + 1e-9
        assert (right - left) / (bottom - top) == pytest.approx(width / height)
    left0, top0, _, _ = src.window(0)
    left1, top1, _, _ = src.window(8)
    assert (left0, top0) != (left1, top1)


def test_photos_by_name_including_grayscale() -> None:
    src = pan_sequence(32, 32, shot_frames=2, photos=["camera", "stereo_motorcycle"])
    gray = src.frame(0)
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1],
                                                                           gray[..., 2])
    colour = src.frame(2)
    assert not np.array_equal(colour[..., 0], colour[..., 2])
    assert pan_sequence(16, 16, shot_frames=1, photos=["astronaut"]).frame(0).shape == (16, 16, 3)


@pytest.mark.parametrize("photos,match", [
    (["no_such_photo"], "unknown scikit-image photo"),
    (["kidney"], "download"),
    (["download_all"], "unknown"),
    ([], "non-empty"),
    ("astronaut", "non-empty list"),
])
def test_bad_photo_lists_raise_input_error(photos: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        pan_sequence(64, 64, photos=photos)  # type: ignore[arg-type]


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="shot_frames"):
        pan_sequence(64, 64, shot_frames=0)
    with pytest.raises(InputError, match="width"):
        pan_sequence(0, 64)
    with pytest.raises(InputError, match="height"):
        pan_sequence(64, 6.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        pan_sequence(16, 16, shot_frames=2).frame(-1)


# --- folders ---------------------------------------------------------------------------

def _write_images(folder: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(folder / "b.png")
    Image.fromarray(rng.integers(0, 256, (90, 60), dtype=np.uint8)).save(folder / "a.JPG")
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)).save(folder / "c.webp")
    Image.fromarray(rng.integers(0, 256, (33, 70, 3), dtype=np.uint8)).save(folder / "d.bmp")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "e.tif")
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()


def test_folder_sequence_reads_sorted_images(tmp_path: Path) -> None:
    _write_images(tmp_path)
    src = folder_sequence(tmp_path, 32, 24)
    assert isinstance(src, FrameSource)
    assert len(src) == 5
    assert [p.name for p in src.files] == ["a.JPG", "b.png", "c.webp", "d.bmp", "e.tif"]
    for k in range(7):
        f = src.frame(k)
        assert f.shape == (24, 32, 3) and f.dtype == np.uint8
    np.testing.assert_array_equal(src.frame(1), src.frame(6))
    np.testing.assert_array_equal(src.frame(3), folder_sequence(tmp_path, 32, 24).frame(3))


def test_folder_sequence_centre_crops_to_the_frame_aspect(tmp_path: Path) -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, :100] = (0, 0, 255)
    img[:, 100:200] = (255, 0, 0)  # the centre square is red
    img[:, 200:] = (0, 255, 0)
    Image.fromarray(img).save(tmp_path / "x.png")
    f = folder_sequence(tmp_path, 40, 40).frame(0)
    assert f[:, 4:-4, 0].min() >= 250 and f[:, 4:-4, 1:].max() <= 5
    wide = folder_sequence(tmp_path, 120, 40).frame(0)  # same aspect as the file: all of it
    assert wide[:, :30, 2].mean() > 240 and wide[:, -30:, 1].mean() > 240


def test_folder_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InputError, match=rf"{missing}.*not found"):
        folder_sequence(missing, 64, 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(InputError, match=rf"{empty}.*no image files"):
        folder_sequence(empty, 64, 64)
    broken = tmp_path / "broken"
    broken.mkdir()
    Image.new("RGB", (8, 8)).save(broken / "a.png")
    (broken / "b.png").write_bytes(b"definitely not a png")
    with pytest.raises(InputError, match=r"b\.png.*cannot read image.*replace or remove"):
        folder_sequence(broken, 64, 64)


def test_truncated_image_fails_when_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])  # header intact, data cut
    src = folder_sequence(tmp_path, 16, 16)
    with pytest.raises(InputError, match=r"t\.png.*cannot read image"):
        src.frame(0)


@pytest.mark.skipif(not KODAK.is_dir(), reason=f"Kodak images not present at {KODAK}")
def test_kodak_folder() -> None:
    src = folder_sequence(KODAK, 64, 64)
    assert len(src) >= 1
    assert src.frame(0).shape == (64, 64, 3)


# --- scenario specs --------------------------------------------------------------------

def test_make_source_from_specs(tmp_path: Path) -> None:
    src = make_source({"source": "skimage", "shot_frames": 3, "photos": ["coffee"]}, 32, 32,
                      tmp_path)
    assert len(src) == 3 and src.frame(0).shape == (32, 32, 3)
    assert len(make_source({"source": "skimage"}, 32, 32, tmp_path)) == 50 * len(SKIMAGE_PHOTOS)
    (tmp_path / "frames").mkdir()
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "frames" / "f0.png")
    folder = make_source({"source": "folder", "path": "frames"}, 16, 8, tmp_path)
    assert len(folder) == 1 and folder.frame(0)[4, 4].tolist() == [1, 2, 3]


@pytest.mark.parametrize("spec,match", [
    ({"source": "youtube"}, "one of folder, generated, skimage"),
    ({}, "one of"),
    ({"source": "skimage", "shotframes": 3}, "unknown key.*shotframes"),
    ({"source": "skimage", "shot_frames": "50"}, "shot_frames"),
    ({"source": "folder"}, "needs a 'path'"),
    ({"source": "folder", "path": "absent"}, "absent.*not found"),
    (["skimage"], "mapping"),
])
def test_make_source_rejects_bad_specs(spec: object, match: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=match):
        make_source(spec, 64, 64, tmp_path)  # type: ignore[arg-type]
