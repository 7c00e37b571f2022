"""Downsample-then-WebP: at a low budget, a smaller picture coded well beats the full-size
one coded badly.

The encoder tries each scale, largest first, and bisects WebP's quality knob (1-100) for the
largest payload that fits the budget. The first scale whose best fit reaches
``min_quality`` wins; if none does, the best fit at the smallest scale is sent; if nothing
fits, the frame is skipped. The scale travels in ``meta``; the decoder upsamples back.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from diffstream.codecs.base import Capabilities, CodecError, Encoded


class DownsampleWebP:
    capabilities = Capabilities()  # not progressive: a prefix of a WebP payload does not decode

    class Options(BaseModel):
        """``codec_options`` of this codec, checked when the scenario is loaded."""

        model_config = ConfigDict(extra="forbid")
        scales: tuple[float, ...] = Field((1.0, 0.5, 0.25), min_length=1)
        min_quality: int = Field(30, ge=1, le=100)
        method: int = Field(2, ge=0, le=6, description="libwebp effort (0 fast - 6 small)")

    def __init__(self, scales: tuple[float, ...] = (1.0, 0.5, 0.25), min_quality: int = 30,
                 method: int = 2) -> None:
        self.scales = sorted((float(s) for s in scales), reverse=True)
        self.min_quality, self.method = min_quality, method
        self._floors: dict[tuple[int, int], int] = {}

    def _webp(self, im: Image.Image, q: int) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="WEBP", quality=q, method=self.method)
        return buf.getvalue()

    def _fit(self, im: Image.Image, budget_bytes: int) -> tuple[int, bytes] | None:
        """The highest quality whose payload fits (bisection: size grows with quality)."""
        lo, hi, best = 1, 100, None
        while lo <= hi:
            q = (lo + hi) // 2
            data = self._webp(im, q)
            if len(data) <= budget_bytes:
                best, lo = (q, data), q + 1
            else:
                hi = q - 1
        return best

    @staticmethod
    def _size(shape: tuple[int, int], s: float) -> tuple[int, int]:
        return max(1, round(shape[1] * s)), max(1, round(shape[0] * s))  # (w, h) for PIL

    def encode(self, image: np.ndarray, budget_bits: int) -> Encoded:
        im, shape = Image.fromarray(image), image.shape[:2]
        best = None
        for s in self.scales:
            fit = self._fit(im.resize(self._size(shape, s), Image.BICUBIC), budget_bits // 8)
            if fit is not None:
                best = (s, *fit)
                if fit[0] >= self.min_quality:
                    break
        if best is None:
            return Encoded(b"", skipped=True, reason=f"budget {budget_bits} bits < the "
                           f"smallest WebP at scale {self.scales[-1]}")
        s, q, data = best
        return Encoded(data, {"s": s, "q": q})

    def decode(self, payload: bytes, meta: dict[str, Any], shape: tuple[int, int]) -> np.ndarray:
        s = meta.get("s")
        if s not in self.scales or not payload:
            raise CodecError(f"no payload, or a scale {s!r} this codec does not use")
        try:
            small = Image.open(io.BytesIO(payload), formats=["WEBP"])
            if small.size != self._size(shape, s):  # checked before decoding any pixel
                raise CodecError(f"payload is {small.size}, expected {self._size(shape, s)}")
            small = small.convert("RGB")
        except (OSError, ValueError) as exc:
            raise CodecError(f"not a WebP payload: {exc}") from None
        return np.asarray(small.resize((shape[1], shape[0]), Image.BICUBIC))

    def min_bits(self, shape: tuple[int, int]) -> int:
        """Quality 1 at the smallest scale, on seeded noise (a rough floor, as the contract
        asks: content dependent)."""
        if shape not in self._floors:
            noise = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
            small = Image.fromarray(noise).resize(self._size(shape, self.scales[-1]))
            self._floors[shape] = 8 * len(self._webp(small, 1))
        return self._floors[shape]
