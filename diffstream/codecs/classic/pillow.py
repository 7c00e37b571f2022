"""Classical baselines: JPEG and WebP through Pillow, fitted to a bit budget.

Both codecs pick the integer quality knob (1..100) by search so that the payload is the
largest one that fits ``budget_bits``. Payload size is nearly, not strictly, monotone in
quality (WebP has a few inversions per 100 steps), so every probe is kept and the largest
fitting payload among all probes wins; ``meta['probes']`` counts the encodes.

Search cost. The search is ``codecs.ratecontrol.fit_budget`` (this module's search, moved
there to be shared). Each codec instance keeps a rate model per frame shape (quality ->
bits, a ``TableModel``). It starts as the curve of a synthetic pink-noise frame (16
encodes, once per shape, shared with ``min_bits``); after every call it is rescaled to that
frame's content and the probed points overwrite it, so it tracks the stream. A call probes
the q the model predicts for the budget, corrected by this call's own probes; while only
one side of the answer is known it aims past the prediction by a margin that doubles (1, 2,
4, ...) until the answer is bracketed, then alternates corrected interpolation with
bisection. A typical call on a video-like stream costs 2-4 encodes (measured mean 3-3.5
with budgets jumping by 10x, max 8). At most ``MAX_PROBES`` (8) are made; if the bracket
is still open then, the best fitting payload so far is used (q may be a little below the
optimum), except that q=1 is still probed when nothing fitted, to settle the skip
decision. The chosen q can depend on earlier calls when sizes are non-monotone or the cap
is hit; it is deterministic for a deterministic sequence of calls.

Floor. When even quality 1 does not fit, the frame is skipped: ``Encoded(payload=b"",
skipped=True, reason=...)``, logged at INFO on this module's logger.

JPEG wire form (RTP/JPEG, RFC 2435 style). A baseline JPEG from libjpeg carries about 600
bytes of headers: JFIF APP0 (18), two DQT (138), four DHT (432), SOF0 (19), SOS (14). At
64x64 those 600 bytes are 4800 bits = 1.2 bpp, more than the whole working range of the
simulator (0.1-1 bpp). RFC 2435 does not send them: the quantisation tables follow from the
quality factor and the Huffman tables are the standard ones, so both ends can generate them.
This codec goes one step further than keeping SOF0/SOS: the frame header (SOF0) and scan
header (SOS) are also fully implied by (width, height) and the fixed encoder settings, so the
payload is only the entropy-coded scan data plus the 2-byte EOI marker (kept so truncation
is detectable). ``meta`` carries q and the frame size (w, h), which is what the RTP/JPEG
header carries per packet. The decoder regenerates SOI+DQT+SOF0+DHT+SOS by encoding a tiny
grey image at the same quality and subsampling with the same Pillow/libjpeg (cached per q),
patches the SOF0 size, prepends it to the payload and decodes with Pillow; the result is
bit-identical to decoding the full JPEG. The encoder checks, for every probe, that its own
headers equal the regenerated ones, so a libjpeg that behaves differently fails
loudly instead of producing undecodable frames. Encoder settings: baseline sequential,
``optimize=False`` (standard Huffman tables, which is what makes DHT implied), 4:2:0 chroma
subsampling, no EXIF/ICC/JFIF extras (APP segments are stripped anyway).

WebP wire form. Pillow emits a simple lossy file ``RIFF <size> WEBP VP8 <size> <VP8 data>``
(+1 pad byte when the VP8 data length is odd). The payload is the VP8 data alone; the 20
header bytes and the pad byte are rebuilt from the payload length on decode. The encoder
runs with ``method=WEBP_METHOD`` (2): about 2-3x faster than libwebp's default 4 at 64-128 px
for ~5 % larger files, which matters because every call makes several probe encodes. The
decoder needs no settings.

Decoding untrusted payloads. Empty, garbage, truncated or wrong-shape payloads raise
``CodecError``; an image of another shape is never returned. JPEG: the payload must end with
EOI and contain no marker other than RST0-7 / 0xFF00 stuffing, so a truncated payload
always raises (it never reaches libjpeg, which would pad it with grey); a payload whose
``meta`` size differs from ``shape`` raises. Random bytes that happen to pass those checks
(about 1 in 65536 end in FFD9 and most contain a stray marker) decode to *some* image of the
right shape, because libjpeg treats corrupt entropy data as a warning. WebP: libwebp reports
missing data; truncating only the last few bytes that the arithmetic decoder never reads
can still decode (to the right shape, often identically). Pillow's global
``ImageFile.LOAD_TRUNCATED_IMAGES`` is never touched.
"""

from __future__ import annotations

import io
import logging
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from diffstream.codecs.base import Capabilities, CodecError, Encoded, Image
from diffstream.codecs.ratecontrol import RateSearch, TableModel, fit_budget
from diffstream.codecs.registry import register_codec
from diffstream.pipeline.compute import ProfileCost

log = logging.getLogger(__name__)

Q_MIN = 1
Q_MAX = 100
MAX_PROBES = 8
_PRIOR_QS = (1, 3, 6, 10, 15, 20, 30, 40, 50, 60, 70, 80, 88, 94, 97, 100)
WEBP_METHOD = 2
JPEG_SUBSAMPLING = 2  # Pillow's code for 4:2:0

# JPEG markers (ITU T.81 table B.1).
_SOI, _EOI, _SOS, _SOF0, _DQT, _DHT, _COM = 0xD8, 0xD9, 0xDA, 0xC0, 0xDB, 0xC4, 0xFE
_RST = range(0xD0, 0xD8)
_APP = range(0xE0, 0xF0)
_STANDALONE = {_SOI, _EOI, 0x01, *_RST}  # markers without a length field


def _check_image(image: Image) -> np.ndarray:
    """Reject anything that is not H x W x 3 uint8 early, with a message a caller can act on."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = f"array of {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image must be a uint8 numpy array, got {got}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be H x W x 3, got shape {image.shape}")
    return np.ascontiguousarray(image)


def _check_shape(shape: tuple[int, int], error: type[Exception] = CodecError) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise error(f"shape must be (H, W), got {shape!r}") from None
    if h < 1 or w < 1 or h > 16383 or w > 16383:
        raise error(f"shape {shape!r} out of range for JPEG/WebP (1..16383)")
    return h, w


def _meta_int(meta: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = meta.get(key) if isinstance(meta, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise CodecError(f"meta[{key!r}] must be an integer in {lo}..{hi}, got {value!r}")
    return value


class _PillowCodec:
    """Budget search shared by the Pillow codecs; subclasses supply ``_encode_at``."""

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(self) -> None:
        # (h, w) -> rate model (q -> payload bits), kept across calls to guess the next q.
        self._history: dict[tuple[int, int], TableModel] = {}
        self._priors: dict[tuple[int, int], dict[int, float]] = {}

    # --- per-format hooks -------------------------------------------------------------
    def _encode_at(self, im: PILImage.Image, q: int) -> bytes:
        raise NotImplementedError

    def _meta(self, q: int, h: int, w: int) -> dict[str, Any]:
        return {}

    # --- Codec protocol -----------------------------------------------------------------
    def encode(self, image: Image, budget_bits: int) -> Encoded:
        arr = _check_image(image)
        h, w = arr.shape[:2]
        im = PILImage.fromarray(arr, "RGB")
        budget = int(budget_bits)
        found = self._search(im, (h, w), budget)
        if found.knob is None:
            reason = (f"budget {budget} bits < floor {found.floor_bits} bits at quality 1 "
                      f"({self.name} {w}x{h})")
            log.info("skipping frame: %s", reason)
            return Encoded(payload=b"", meta={"probes": found.probes}, skipped=True,
                           reason=reason)
        meta = {"q": found.knob, **self._meta(found.knob, h, w), "probes": found.probes}
        return Encoded(payload=found.payload, meta=meta)

    def floor_bits(self, image: Image) -> int:
        """This image's own floor: its quality-1 size (the search codes every budget at or
        above it, since size grows with quality), in one encode."""
        arr = _check_image(image)
        return 8 * len(self._encode_at(PILImage.fromarray(arr, "RGB"), Q_MIN))

    def min_bits(self, shape: tuple[int, int]) -> int:
        """Quality-1 size of a synthetic natural-looking frame of this shape.

        A flat grey frame would give the true minimum, but real frames need more (64x64 JPEG:
        grey 528 bits, real photo crops 560-1296), so a policy clamped to it would still see
        skips. We encode a fixed-seed pink-noise image with the 1/f amplitude spectrum of
        natural photographs instead; it lands in the upper part of the real range (64x64:
        JPEG 760, WebP ~2600 bits), so a budget at min_bits almost always yields a frame.
        """
        h, w = _check_shape(shape, ValueError)
        return int(self._prior((h, w))[Q_MIN])

    def _prior(self, shape: tuple[int, int]) -> dict[int, float]:
        """Rate curve (q -> bits) of the pink-noise frame: the first call's rate model."""
        if shape not in self._priors:
            im = PILImage.fromarray(_pink_noise(*shape), "RGB")
            self._priors[shape] = {q: float(8 * len(self._encode_at(im, q))) for q in _PRIOR_QS}
        return self._priors[shape]

    # --- search -------------------------------------------------------------------------
    def _search(self, im: PILImage.Image, shape: tuple[int, int], budget: int) -> RateSearch:
        """The largest payload <= budget over q in 1..100 (``codecs.ratecontrol``), guided
        by the rate model carried across calls, which is then rescaled to this frame."""
        model = self._history.get(shape) or TableModel(self._prior(shape))
        found = fit_budget(lambda q: self._encode_at(im, q), budget, Q_MIN, Q_MAX, model,
                           max_probes=MAX_PROBES)
        self._history[shape] = model.updated(found.probed)
        return found


def _pink_noise(h: int, w: int) -> np.ndarray:
    """Deterministic RGB noise with a 1/f amplitude spectrum (natural-image statistics)."""
    rng = np.random.default_rng(0)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2)
    radius[0, 0] = 1.0
    shared = rng.standard_normal((h, w))
    chans = []
    for _ in range(3):  # correlated channels, like real colour photos
        noise = 0.8 * shared + 0.2 * rng.standard_normal((h, w))
        x = np.real(np.fft.ifft2(np.fft.fft2(noise) / radius))
        std = x.std()
        chans.append((x - x.mean()) / (std if std > 0 else 1.0) * 40.0 + 128.0)
    return np.clip(np.rint(np.stack(chans, axis=-1)), 0, 255).astype(np.uint8)


def _pillow_decode(data: bytes, fmt: str, h: int, w: int) -> np.ndarray:
    """Decode with Pillow; any failure or a size other than (h, w) becomes CodecError."""
    try:
        with PILImage.open(io.BytesIO(data), formats=[fmt]) as im:
            if im.size != (w, h):  # checked before decoding: no work for wrong-size bombs
                raise CodecError(f"{fmt} payload is {im.size[0]}x{im.size[1]}, "
                                 f"expected {w}x{h}")
            im.load()
            arr = np.array(im.convert("RGB"), dtype=np.uint8)
    except CodecError:
        raise
    except Exception as exc:  # Pillow raises many types on hostile input; all mean "corrupt"
        raise CodecError(f"corrupt {fmt} payload ({len(data)} bytes): "
                         f"{type(exc).__name__}: {exc}") from exc
    if arr.shape != (h, w, 3):
        raise CodecError(f"{fmt} payload decoded to {arr.shape}, expected {(h, w, 3)}")
    return arr


# ---------------------------------------------------------------------------------------
# JPEG
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JpegSegment:
    """One marker segment: ``raw`` is the marker plus its length field and body."""

    marker: int
    raw: bytes


def _scan_end(data: bytes, pos: int) -> int:
    """Index of the first real marker (its 0xFF) in entropy-coded data starting at ``pos``.

    Inside a scan 0xFF is followed by 0x00 (a stuffed data byte) or RST0-7; 0xFF 0xFF is
    fill before a marker. Returns len(data) when no marker follows.
    """
    n = len(data)
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            return n
        j = i + 1
        while j < n and data[j] == 0xFF:  # fill bytes
            j += 1
        if j >= n:
            return n
        code = data[j]
        if code == 0x00 or code in _RST:
            pos = j + 1
            continue
        return i


def _ends_with_eoi(data: bytes, pos: int) -> bool:
    """True when the scan starting at ``pos`` runs to an EOI (after optional fill) at the end."""
    stop = _scan_end(data, pos)
    return stop < len(data) and data[stop:].lstrip(b"\xff") == b"\xd9"


def parse_jpeg(data: bytes) -> tuple[list[JpegSegment], bytes]:
    """Split a baseline single-scan JPEG into its header segments (SOI..SOS) and the scan.

    The scan is the entropy-coded data followed by EOI, exactly as it ends the file.
    Raises ValueError on anything else (progressive, several scans, trailing data).
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG stream (no SOI)")
    segments = [JpegSegment(_SOI, data[:2])]
    pos = 2
    n = len(data)
    while True:
        if pos + 1 >= n or data[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        marker = data[pos + 1]
        if marker in _STANDALONE:
            raise ValueError(f"unexpected marker 0xFF{marker:02X} before the scan")
        if pos + 4 > n:
            raise ValueError("truncated marker segment")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > n:
            raise ValueError(f"bad length {length} for marker 0xFF{marker:02X}")
        segments.append(JpegSegment(marker, data[pos:end]))
        pos = end
        if marker == _SOS:
            break
    if not _ends_with_eoi(data, pos):
        raise ValueError("expected a single scan followed by EOI at the end of the stream")
    return segments, data[pos:]


def _strip_header(segments: list[JpegSegment]) -> bytes:
    """The header the decoder can regenerate: everything but APPn/COM, in stream order."""
    return b"".join(s.raw for s in segments if s.marker not in _APP and s.marker != _COM)


def _with_size(header: bytes, h: int, w: int) -> bytes:
    """Patch height/width into the (single) SOF0 segment of ``header``."""
    i = header.find(b"\xff\xc0")
    if i < 0:
        raise ValueError("no SOF0 in JPEG header")
    return header[:i + 5] + struct.pack(">HH", h, w) + header[i + 9:]


def _jpeg_bytes(im: PILImage.Image, q: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=q, optimize=False, progressive=False,
            subsampling=JPEG_SUBSAMPLING)
    return buf.getvalue()


@lru_cache(maxsize=Q_MAX)
def _jpeg_template(q: int) -> bytes:
    """SOI+DQT+SOF0+DHT+SOS as this Pillow/libjpeg writes them at quality q (size 16x16)."""
    tiny = PILImage.new("RGB", (16, 16), (128, 128, 128))
    segments, _ = parse_jpeg(_jpeg_bytes(tiny, q))
    markers = [s.marker for s in segments]
    if markers.count(_SOF0) != 1 or _DQT not in markers or _DHT not in markers:
        raise RuntimeError(f"unexpected JPEG layout from Pillow: markers {markers}")
    return _strip_header(segments)


def jpeg_header(q: int, h: int, w: int) -> bytes:
    """The JPEG header the decoder prepends to a payload (RFC 2435-style reconstruction)."""
    return _with_size(_jpeg_template(q), h, w)


def strip_jpeg(data: bytes) -> bytes:
    """Full baseline JPEG -> payload (entropy-coded data + EOI)."""
    _, scan = parse_jpeg(data)
    return scan


def _check_scan(payload: bytes) -> None:
    """Reject payloads that are not one complete scan: missing EOI means truncated."""
    if len(payload) < 3:
        raise CodecError(f"JPEG payload too short ({len(payload)} bytes)")
    if payload[-2:] != b"\xff\xd9":
        raise CodecError("JPEG payload does not end with EOI: truncated or corrupt")
    if not _ends_with_eoi(payload, 0):
        stop = _scan_end(payload, 0)
        raise CodecError(f"JPEG payload has a marker at byte {stop} inside the scan")


# cpu-2core: the 2-core CI/dev machine (Python 3.11, Pillow 13, libjpeg-turbo, libwebp
# method 2), 128x128 frames, mean of 200 calls at budgets cycling 0.25-2 bpp, the encoder's
# budget search included: `python benchmarks/bench_codecs.py` printed jpeg 0.38 / 0.13 ms
# and webp 2.04 / 0.18 ms (encode / decode). Costs are per call, whatever the frame size.
@register_codec("jpeg")
class JpegCodec(_PillowCodec):
    """Baseline JPEG (4:2:0) with tables and headers implied by q and size (RFC 2435)."""

    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "cpu-2core": ProfileCost(encode_ms=0.4, decode_ms=0.15),
    }

    def _encode_at(self, im: PILImage.Image, q: int) -> bytes:
        segments, scan = parse_jpeg(_jpeg_bytes(im, q))
        if _strip_header(segments) != jpeg_header(q, im.height, im.width):
            raise RuntimeError(
                "this Pillow/libjpeg writes headers that differ from the ones the decoder "
                f"regenerates (q={q}); the RFC 2435 payload form cannot be used")
        return scan

    def _meta(self, q: int, h: int, w: int) -> dict[str, Any]:
        return {"w": w, "h": h}

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        h, w = _check_shape(shape)
        q = _meta_int(meta, "q", Q_MIN, Q_MAX)
        mh, mw = _meta_int(meta, "h", 1, 65535), _meta_int(meta, "w", 1, 65535)
        if (mh, mw) != (h, w):
            raise CodecError(f"JPEG payload is {mw}x{mh}, expected {w}x{h}")
        if not payload:
            raise CodecError("empty JPEG payload (a skipped frame has nothing to decode)")
        _check_scan(bytes(payload))
        return _pillow_decode(jpeg_header(q, h, w) + bytes(payload), "JPEG", h, w)


# ---------------------------------------------------------------------------------------
# WebP
# ---------------------------------------------------------------------------------------

def strip_webp(data: bytes) -> bytes:
    """Simple lossy WebP file -> its VP8 chunk data (RIFF and chunk headers removed)."""
    if len(data) < 20 or data[:4] != b"RIFF" or data[8:16] != b"WEBPVP8 ":
        raise ValueError(f"not a simple lossy WebP file (starts {data[:16]!r})")
    size = int.from_bytes(data[16:20], "little")
    if len(data) != 20 + size + (size & 1):
        raise ValueError("WebP file has extra chunks or a wrong VP8 chunk size")
    return data[20:20 + size]


def rebuild_webp(vp8: bytes) -> bytes:
    """VP8 chunk data -> a complete WebP file (inverse of ``strip_webp``)."""
    pad = b"\x00" if len(vp8) & 1 else b""
    riff_size = 4 + 8 + len(vp8) + len(pad)
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WEBPVP8 "
            + struct.pack("<I", len(vp8)) + vp8 + pad)


@register_codec("webp")
class WebpCodec(_PillowCodec):
    """Lossy WebP (VP8) with the RIFF container stripped."""

    compute_costs: ClassVar[dict[str, ProfileCost]] = {
        "cpu-2core": ProfileCost(encode_ms=2.0, decode_ms=0.2),  # measured with jpeg's
    }

    def _encode_at(self, im: PILImage.Image, q: int) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="WEBP", quality=q, method=WEBP_METHOD, lossless=False)
        return strip_webp(buf.getvalue())

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> Image:
        h, w = _check_shape(shape)
        if not payload:
            raise CodecError("empty WebP payload (a skipped frame has nothing to decode)")
        if len(payload) > 0xFFFFFFF0:
            raise CodecError("WebP payload too large")
        return _pillow_decode(rebuild_webp(bytes(payload)), "WEBP", h, w)
