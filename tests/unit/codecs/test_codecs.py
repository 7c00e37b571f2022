"""JPEG/WebP baselines: budget fitting, RFC 2435-style header stripping, hostile payloads."""

from __future__ import annotations

import io
import logging
import re
from functools import cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from diffstream.codecs import Codec, CodecError, create_codec
from diffstream.codecs.base import Capabilities, capabilities_of
from diffstream.codecs.classic.pillow import (
    JpegCodec,
    WebpCodec,
    _jpeg_bytes,
    jpeg_header,
    parse_jpeg,
    rebuild_webp,
    strip_jpeg,
    strip_webp,
)

CODECS = ["jpeg", "webp"]


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def frame(name: str, size: int, y: int = 40, x: int = 60) -> np.ndarray:
    """A size x size crop of a scikit-image photo, downscaled 2x so it looks like a frame."""
    big = _photo(name)[y:y + 2 * size, x:x + 2 * size]
    im = Image.fromarray(big).resize((size, size), Image.LANCZOS)
    return np.asarray(im).copy()


FRAMES = [(n, s) for n in ("astronaut", "chelsea", "coffee") for s in (64, 128)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


# --- contract -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", CODECS)
def test_registered_and_follow_the_protocol(name: str) -> None:
    codec = create_codec(name)
    assert isinstance(codec, Codec)
    assert codec.name == name
    assert capabilities_of(codec) == Capabilities()  # neither progressive nor generative


@pytest.mark.parametrize("name", CODECS)
def test_roundtrip_quality_and_meta(name: str) -> None:
    codec = create_codec(name)
    img = frame("astronaut", 64)
    enc = codec.encode(img, 64 * 64)  # 1 bpp
    assert not enc.skipped and 0 < enc.bits <= 64 * 64
    expected = {"q", "probes", "w", "h"} if name == "jpeg" else {"q", "probes"}
    assert set(enc.meta) == expected
    assert 1 <= enc.meta["q"] <= 100 and 1 <= enc.meta["probes"] <= 9
    out = codec.decode(enc.payload, enc.meta, (64, 64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert psnr(img, out) > 24.0


def test_rejects_bad_images() -> None:
    codec = create_codec("jpeg")
    with pytest.raises(ValueError, match="uint8"):
        codec.encode(np.zeros((8, 8, 3), np.float32), 10_000)
    with pytest.raises(ValueError, match="H x W x 3"):
        codec.encode(np.zeros((8, 8), np.uint8), 10_000)


# --- JPEG header stripping ----------------------------------------------------------------

@pytest.mark.parametrize("q", [1, 10, 50, 90, 100])
@pytest.mark.parametrize("name,size", [("astronaut", 64), ("coffee", 128), ("chelsea", 40)])
def test_jpeg_stripped_decodes_bit_exactly(name: str, size: int, q: int) -> None:
    img = frame(name, size)
    full = _jpeg_bytes(Image.fromarray(img), q)
    payload = strip_jpeg(full)
    assert len(full) - len(payload) >= 550  # the headers RFC 2435 does not send
    ref = np.asarray(Image.open(io.BytesIO(full)).convert("RGB"))
    meta = {"q": q, "h": size, "w": size}
    out = JpegCodec().decode(payload, meta, (size, size))
    np.testing.assert_array_equal(out, ref)
    assert jpeg_header(q, size, size) + payload == b"".join(
        s.raw for s in parse_jpeg(full)[0] if not 0xE0 <= s.marker <= 0xEF) + payload


def test_jpeg_non_square_shape_is_height_then_width() -> None:
    img = frame("coffee", 128)[:48, :80].copy()
    codec = JpegCodec()
    enc = codec.encode(img, 48 * 80)
    assert enc.meta["h"] == 48 and enc.meta["w"] == 80
    out = codec.decode(enc.payload, enc.meta, (48, 80))
    assert out.shape == (48, 80, 3) and psnr(img, out) > 22.0


def test_parser_handles_restart_markers_stuffing_and_fill() -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=95, restart_marker_blocks=2)
    full = buf.getvalue()
    segments, scan = parse_jpeg(full)
    assert 0xDD in [s.marker for s in segments]  # DRI kept with the header
    assert any(bytes([0xFF, m]) in scan for m in range(0xD0, 0xD8))  # RSTn inside the scan
    assert b"\xff\x00" in scan  # byte stuffing
    assert scan.endswith(b"\xff\xd9") and len(segments[-1].raw) + len(scan) < len(full)
    # Fill bytes (0xFF 0xFF ...) before EOI are part of the scan's end, not data.
    filled = full[:-2] + b"\xff\xff\xff\xd9"
    assert parse_jpeg(filled)[1].endswith(b"\xff\xff\xff\xd9")
    with pytest.raises(ValueError):
        parse_jpeg(full[:-2])  # no EOI
    with pytest.raises(ValueError):
        parse_jpeg(full + b"junk")
    with pytest.raises(ValueError):
        parse_jpeg(b"\x89PNG\r\n")


def test_progressive_jpeg_is_refused_by_the_parser() -> None:
    buf = io.BytesIO()
    Image.fromarray(frame("astronaut", 64)).save(buf, "JPEG", quality=50, progressive=True)
    with pytest.raises(ValueError):
        parse_jpeg(buf.getvalue())


def test_webp_strip_and_rebuild_roundtrip() -> None:
    for q in (1, 50, 100):
        buf = io.BytesIO()
        Image.fromarray(frame("chelsea", 64)).save(buf, "WEBP", quality=q, method=2)
        full = buf.getvalue()
        vp8 = strip_webp(full)
        assert len(full) - len(vp8) in (20, 21)  # 21 with the pad byte
        assert rebuild_webp(vp8) == full


# --- budgets ------------------------------------------------------------------------------

@pytest.mark.parametrize("codec_name", CODECS)
@pytest.mark.parametrize("name,size", FRAMES)
def test_budget_is_never_exceeded_and_floor_skips(codec_name: str, name: str,
                                                   size: int) -> None:
    codec = create_codec(codec_name)
    img = frame(name, size)
    pixels = size * size
    floor = 8 * len(codec._encode_at(Image.fromarray(img), 1))
    budgets = np.unique(np.geomspace(floor, 4 * pixels, 12).astype(int))
    qs = {}
    for budget in budgets:
        enc = codec.encode(img, int(budget))
        assert not enc.skipped, (budget, enc.reason)
        assert 0 < enc.bits <= budget
        assert enc.meta["probes"] <= 9
        qs[int(budget)] = enc.meta["q"]
    # Weak monotonicity: a budget 2x larger never gets a lower quality knob.
    for b in qs:
        for b2 in qs:
            if b2 >= 2 * b:
                assert qs[b2] >= qs[b], (b, qs[b], b2, qs[b2])
    for budget in (floor - 1, floor // 2, 0, -5):
        enc = codec.encode(img, budget)
        assert enc.skipped and enc.payload == b""
        assert re.fullmatch(
            rf"budget {budget} bits < floor {floor} bits at quality 1 "
            rf"\({codec_name} {size}x{size}\)", enc.reason), enc.reason


@pytest.mark.parametrize("codec_name", CODECS)
def test_search_finds_the_largest_fitting_quality(codec_name: str) -> None:
    """Against exhaustive search: the chosen q is the best (or within the cap's slack)."""
    codec = create_codec(codec_name)
    rng = np.random.default_rng(3)
    misses = 0
    for k in range(12):
        img = frame("astronaut", 64, y=100 + 3 * k, x=150 + 5 * k)
        pil = Image.fromarray(img)
        sizes = [8 * len(codec._encode_at(pil, q)) for q in range(1, 101)]
        budget = int(64 * 64 * rng.uniform(0.3, 3.0))
        enc = codec.encode(img, budget)
        best = max(s for s in sizes if s <= budget)
        misses += enc.bits != best
    assert misses <= 1


def test_skip_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="diffstream.codecs.classic.pillow"):
        enc = create_codec("jpeg").encode(frame("coffee", 64), 100)
    assert enc.skipped
    assert any("budget 100 bits < floor" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("codec_name", CODECS)
def test_min_bits_is_a_realistic_floor(codec_name: str) -> None:
    codec = create_codec(codec_name)
    for size in (64, 128):
        floors = [8 * len(codec._encode_at(Image.fromarray(frame(n, size)), 1))
                  for n in ("astronaut", "chelsea", "coffee")]
        grey = np.full((size, size, 3), 128, np.uint8)
        grey_floor = 8 * len(codec._encode_at(Image.fromarray(grey), 1))
        m = codec.min_bits((size, size))
        assert m == codec.min_bits((size, size))  # cached, deterministic
        assert m > grey_floor  # more useful than the flat-frame minimum
        assert min(floors) / 2 < m < 3 * max(floors)


# --- hostile payloads ---------------------------------------------------------------------

@cache
def _valid(codec_name: str) -> tuple[bytes, dict]:
    enc = create_codec(codec_name).encode(frame("chelsea", 64), 64 * 64)
    return enc.payload, enc.meta


def _assert_genuine_decodes(codec_name: str) -> None:
    """A decoder that refuses everything passes "raise or keep shape"; this one fails it."""
    payload, meta = _valid(codec_name)
    out = create_codec(codec_name).decode(payload, meta, (64, 64))
    assert out.shape == (64, 64, 3) and psnr(frame("chelsea", 64), out) > 24.0


@pytest.mark.parametrize("codec_name", CODECS)
def test_empty_payload_raises(codec_name: str) -> None:
    _, meta = _valid(codec_name)
    with pytest.raises(CodecError, match="empty"):
        create_codec(codec_name).decode(b"", meta, (64, 64))


@pytest.mark.parametrize("codec_name", CODECS)
def test_wrong_shape_raises(codec_name: str) -> None:
    payload, meta = _valid(codec_name)
    with pytest.raises(CodecError, match="expected 128x128"):
        create_codec(codec_name).decode(payload, meta, (128, 128))


def test_jpeg_bad_meta_raises() -> None:
    payload, meta = _valid("jpeg")
    codec = JpegCodec()
    for bad in ({}, {**meta, "q": 0}, {**meta, "q": "50"}, {**meta, "q": True}):
        with pytest.raises(CodecError, match="meta"):
            codec.decode(payload, bad, (64, 64))


def test_jpeg_marker_inside_scan_raises() -> None:
    payload, meta = _valid("jpeg")
    bad = payload[:10] + b"\xff\xc4" + payload[12:]
    with pytest.raises(CodecError, match="marker"):
        JpegCodec().decode(bad, meta, (64, 64))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_truncated_jpeg_always_raises(cut: int) -> None:
    payload, meta = _valid("jpeg")
    n = cut % len(payload)
    with pytest.raises(CodecError):
        JpegCodec().decode(payload[:n], meta, (64, 64))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_truncated_webp_raises_or_keeps_shape(cut: int) -> None:
    _assert_genuine_decodes("webp")
    payload, meta = _valid("webp")
    n = cut % len(payload)
    try:
        out = WebpCodec().decode(payload[:n], meta, (64, 64))
    except CodecError:
        return
    # documented: only the last few bytes, which the arithmetic decoder never reads, may go
    assert n >= len(payload) - 16, f"{len(payload) - n} bytes cut, still decoded"
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("codec_name", CODECS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=0, max_size=2000))
def test_random_bytes_raise_or_keep_shape(codec_name: str, data: bytes) -> None:
    """Garbage raises CodecError; only bytes that pass the structural checks (JPEG: ends in
    EOI; VP8: the key-frame start code at byte 3) may decode, and then to the right shape."""
    _assert_genuine_decodes(codec_name)
    _, meta = _valid(codec_name)
    plausible = data.endswith(b"\xff\xd9") if codec_name == "jpeg" else data[3:6] == b"\x9d\x01\x2a"
    try:
        out = create_codec(codec_name).decode(data, meta, (64, 64))
    except CodecError:
        return
    assert plausible, f"garbage {data[:12]!r} ({len(data)} bytes) decoded, no CodecError"
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(min_size=1, max_size=1500))
def test_well_formed_garbage_scan_reaches_libjpeg_and_keeps_shape(data: bytes) -> None:
    """Random entropy data with legal stuffing and EOI passes our checks; libjpeg decodes it."""
    _, meta = _valid("jpeg")
    scan = data.replace(b"\xff", b"\xff\x00") + b"\xff\xd9"
    out = JpegCodec().decode(scan, meta, (64, 64))  # corrupt entropy data: a warning only
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8


def _well_formed_scan(scan: bytes, meta: dict) -> bool:
    try:
        parse_jpeg(jpeg_header(meta["q"], 64, 64) + scan)
    except ValueError:
        return False
    return True


def test_random_bit_flips_raise_or_keep_shape() -> None:
    rng = np.random.default_rng(7)
    for codec_name in CODECS:
        _assert_genuine_decodes(codec_name)
        payload, meta = _valid(codec_name)
        codec = create_codec(codec_name)
        for _ in range(100):
            buf = bytearray(payload)
            for i in rng.integers(0, len(buf), 3):
                buf[i] ^= 1 << int(rng.integers(0, 8))
            try:
                out = codec.decode(bytes(buf), meta, (64, 64))
            except CodecError:
                # JPEG: refused only when a flip broke the scan's markers (else libjpeg warns)
                assert codec_name == "webp" or not _well_formed_scan(bytes(buf), meta)
                continue
            assert codec_name == "webp" or _well_formed_scan(bytes(buf), meta)
            assert out.shape == (64, 64, 3)


def test_load_truncated_images_stays_disabled() -> None:
    payload, meta = _valid("jpeg")
    JpegCodec().decode(payload, meta, (64, 64))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncation_is_caught_even_if_pillow_would_pad(monkeypatch: pytest.MonkeyPatch) -> None:
    """With LOAD_TRUNCATED_IMAGES on (someone else's global), libjpeg would grey-pad; we don't."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    payload, meta = _valid("jpeg")
    for n in (len(payload) - 1, len(payload) - 2, len(payload) // 2):
        with pytest.raises(CodecError, match="EOI"):
            JpegCodec().decode(payload[:n], meta, (64, 64))


@pytest.mark.parametrize("codec_name", CODECS)
def test_search_is_cheap_on_a_video_like_stream(codec_name: str) -> None:
    """The rate model carried across calls keeps a pan at ~3 encodes per frame, not 7."""
    from diffstream.content.sources import pan_sequence

    src = pan_sequence(64, 64, shot_frames=20, photos=["astronaut", "coffee"])
    codec = create_codec(codec_name)
    rng = np.random.default_rng(5)
    budget = 64 * 64.0
    probes = []
    for k in range(40):
        budget = float(np.clip(budget * rng.uniform(0.8, 1.25), 0.3 * 4096, 3 * 4096))
        enc = codec.encode(src.frame(k), int(budget))
        assert enc.bits <= budget
        probes.append(enc.meta["probes"])
    assert np.mean(probes[1:]) <= 4.5, probes
    assert max(probes) <= 9
