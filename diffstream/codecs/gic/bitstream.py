"""GIC bitstream: the payload format and the real rANS coding of (z, y) via compressai.

Payload (all of it crosses the link; the decoder needs nothing else but the frame shape):

    bytes 0-1  big-endian u16: format version (high 4 bits) | q index (low 12 bits)
    bytes 2-   one compressai rANS stream (BufferedRansEncoder, 32-bit words): the
               hyperprior symbols z first, then the latent symbols y

q is carried as an index on a 4096-point log grid over the entropy model's range
[q_lo, q_hi] (steps of 0.11 % for the default 100x range), so both ends derive the same
float q from two bytes. One stream for z and y saves a second rANS flush (4+ bytes) and a
length field, which is 10 % of a 64x64 frame at 0.1 bpp.

Coding (Eq. 5, mean-shifted, see diffstream/codecs/gic/hyperprior.py):
z symbols = round(z - median) under the EntropyBottleneck's tables; y symbols
r = round((y - mu) / q) under compressai's zero-mean GaussianConditional tables indexed by
sigma / q; the decoder's latent is y_hat = mu + q * r. Format 1 (no longer accepted) coded
round(y / q) - round(mu / q) and rebuilt y_hat = q * round(y / q), which dropped the mean
and wasted about half the low-rate bits (issue 14).

Matching entropy parameters on both ends. Encoder and decoder must compute the same
(mu, sigma) from the decoded z: sigma picks the scale table (an integer index: a flip
decodes other symbols), and mu now enters y_hat as a float. In float32 they did not always
agree: the same h_s on the same values gave results differing by ~6e-7 between the
encoder's and the decoder's call (the CPU convolution kernels' summation order depends on
how the input was allocated), which flipped a scale index about once per 400 frames. So
both ends run the *same function* on the *same integer z symbols*: a float64 copy of h_s,
on the CPU, one thread, with the input rebuilt from the symbol list; y_hat = mu + q * r is
formed in float64 and only then cast to float32. In one build the two ends agree bit for
bit. Under another CPU instruction set (``ATEN_CPU_CAPABILITY``) mu may differ in the last
float64 bits, ~1e-16 relative, far below float32 resolution, so y_hat is the same or one
float32 ulp off, and a scale-index flip needs sigma / q within ~1e-15 of a table boundary.
A mismatch that still happened is caught by the re-encode check below: ``CodecError``,
never a wrong image.

Untrusted payloads. compressai's rANS decoder reads 32-bit words without bounds checks, so
the stream is handed to it followed by enough zero words that no sequence of symbol and
bypass decodes can run past the buffer (each decode step renormalises by at most one word;
the bound is computed from the stream length and the symbol count). After decoding, the
symbols are re-encoded and must reproduce the stream byte for byte: a valid encoder output
is the unique canonical encoding of its symbols, so truncated, padded or corrupted
payloads are rejected (``CodecError``) at no cost in bits.
"""

from __future__ import annotations

import copy
import math
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from compressai.ans import BufferedRansEncoder, RansDecoder

from diffstream.codecs.base import CodecError
from diffstream.codecs.gic.hyperprior import RateVariableHyperprior, params_from_hyper

FORMAT_VERSION = 2  # 2: mean-shifted y symbols (1: means rounded onto the q grid)
Q_BITS = 12
Q_LEVELS = 1 << Q_BITS
HEADER_BYTES = 2
Z_SYMBOL_LIMIT = 1 << 15  # |z - median| beyond this never comes from the encoder
MAX_BYTES_PER_SYMBOL = 8  # far above any real encoding (bypass-coded tails included)
_THREAD_LOCK = threading.RLock()  # re-entrant: a sampler callback may code a frame


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch CPU ops on one thread (bit-identical entropy parameters in every process)."""
    with _THREAD_LOCK:
        old = torch.get_num_threads()
        if old != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if old != 1:
                torch.set_num_threads(old)


def q_of_index(index: int, q_lo: float, q_hi: float) -> float:
    """The q that index 0..4095 stands for (log grid; float64, identical on both ends)."""
    return math.exp(math.log(q_lo) + index / (Q_LEVELS - 1) * (math.log(q_hi) - math.log(q_lo)))


def index_of_q(q: float, q_lo: float, q_hi: float) -> int:
    """Nearest grid index for q (clamped to the range)."""
    t = (math.log(q) - math.log(q_lo)) / (math.log(q_hi) - math.log(q_lo))
    return int(min(max(round(t * (Q_LEVELS - 1)), 0), Q_LEVELS - 1))


@dataclass
class Analysis:
    """Everything about one frame that does not depend on q (computed once per encode)."""

    y: torch.Tensor  # 1 x C x h x w normalised latent (CPU float32)
    z_symbols: list[int]
    mu: torch.Tensor
    sigma: torch.Tensor
    z_bits: float  # -log2 P(z_hat): the hyperprior's ideal cost


class LatentCoder:
    """Real compress/decompress of a latent at scale q with one hyperprior model."""

    def __init__(self, hyper: RateVariableHyperprior, q_lo: float, q_hi: float) -> None:
        self.hyper = hyper.cpu().eval()
        self.q_lo, self.q_hi = float(q_lo), float(q_hi)
        with torch.no_grad(), one_thread():
            # exact tail quantiles by bisection (deterministic, same on both ends), then
            # compressai's CDF tables; the aux loss alone leaves them loose
            self.hyper.entropy_bottleneck.update(force=True, update_quantiles=True)
            self.hyper.gaussian.update()
        eb, gc = self.hyper.entropy_bottleneck, self.hyper.gaussian
        self._z_cdf = eb.quantized_cdf.tolist()
        self._z_len = eb.cdf_length.reshape(-1).int().tolist()
        self._z_off = eb.offset.reshape(-1).int().tolist()
        self._y_cdf_rows = gc.quantized_cdf.tolist()
        self._y_len = gc.cdf_length.reshape(-1).int().tolist()
        self._y_off = gc.offset.reshape(-1).int().tolist()
        self._medians = eb._get_medians().detach().reshape(-1)
        self._med64 = self._medians.double().view(1, -1, 1, 1)
        self._h_s64 = copy.deepcopy(self.hyper.h_s).double().eval()

    # --- shapes ---------------------------------------------------------------------
    @staticmethod
    def z_shape(latent_hw: tuple[int, int]) -> tuple[int, int]:
        h, w = latent_hw
        return (h + 3) // 4, (w + 3) // 4

    # --- q-independent part -----------------------------------------------------------
    @torch.no_grad()
    def params_from_symbols(self, z_symbols: list[int], zhw: tuple[int, int]
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) in float64 from the z symbols: the one code path both ends run."""
        with one_thread():
            zs = torch.tensor(z_symbols, dtype=torch.float64).view(1, -1, *zhw)
            return params_from_hyper(self._h_s64(zs + self._med64))

    @torch.no_grad()
    def analyse(self, y: torch.Tensor) -> Analysis:
        """Hyperprior analysis of a 1 x C x h x w latent: z symbols and entropy parameters."""
        with one_thread():
            y = y.detach().float().cpu()
            z = self.hyper.h_a(y)
            med = self._medians.view(1, -1, 1, 1)
            zs = torch.round(z - med)
            z_hat = zs + med
            lik, _, _ = self.hyper.entropy_bottleneck._likelihood(
                z_hat.permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1), stop_gradient=True)
            z_bits = float(-torch.log2(lik.clamp_min(1e-9)).sum())
        z_symbols = zs.int().reshape(-1).tolist()
        mu, sigma = self.params_from_symbols(z_symbols, tuple(z.shape[2:]))
        return Analysis(y=y, z_symbols=z_symbols, mu=mu, sigma=sigma, z_bits=z_bits)

    def _z_indexes(self, n_channels: int, zhw: tuple[int, int]) -> list[int]:
        return np.repeat(np.arange(n_channels, dtype=np.int32), zhw[0] * zhw[1]).tolist()

    def _y_indexes(self, sigma: torch.Tensor, q: float) -> torch.Tensor:
        """Scale-table index of sigma / q as an int32 tensor (float64 math)."""
        return self.hyper.gaussian.build_indexes(sigma / torch.tensor(q, dtype=torch.float64)
                                                 ).int()

    @staticmethod
    def _symbols(y: torch.Tensor, mu: torch.Tensor, q: float) -> torch.Tensor:
        """r = round((y - mu) / q) in float64 (the encoder's y symbols)."""
        return torch.round((y.double() - mu) / q)

    @staticmethod
    def reconstruct(r: torch.Tensor, mu: torch.Tensor, q: float) -> torch.Tensor:
        """y_hat = mu + q r, formed in float64 on both ends, then float32."""
        return (mu + r.double() * q).float()

    # --- coding ---------------------------------------------------------------------
    def _stream(self, z_symbols: list[int], z_indexes: list[int], y_symbols: list[int],
                y_indexes: list[int]) -> bytes:
        enc = BufferedRansEncoder()
        enc.encode_with_indexes(z_symbols, z_indexes, self._z_cdf, self._z_len, self._z_off)
        enc.encode_with_indexes(y_symbols, y_indexes, self._y_cdf_rows, self._y_len,
                                self._y_off)
        return enc.flush()

    @torch.no_grad()
    def encode(self, a: Analysis, q_index: int) -> bytes:
        """Payload for latent ``a.y`` at grid index ``q_index`` (real rANS bytes)."""
        q = q_of_index(q_index, self.q_lo, self.q_hi)
        with one_thread():
            r = self._symbols(a.y, a.mu, q).int()
            idx = self._y_indexes(a.sigma, q)
        zhw = self.z_shape(tuple(a.y.shape[2:]))
        stream = self._stream(a.z_symbols, self._z_indexes(len(self._z_len), zhw),
                              r.reshape(-1).tolist(), idx.reshape(-1).tolist())
        return struct.pack(">H", (FORMAT_VERSION << Q_BITS) | q_index) + stream

    @torch.no_grad()
    def estimate_bits(self, a: Analysis, q: float) -> float:
        """Ideal code length (-log2 likelihood) at q: guides rate control, never sent."""
        with one_thread():
            r = self._symbols(a.y, a.mu, q)
            lik = self.hyper.y_likelihood(r, a.sigma, torch.tensor(q, dtype=torch.float64))
            return a.z_bits + float(-torch.log2(lik).sum()) + 8 * HEADER_BYTES

    @torch.no_grad()
    def decode(self, payload: bytes, channels: int, latent_hw: tuple[int, int]
               ) -> tuple[torch.Tensor, float, int]:
        """Payload -> (y_hat 1 x C x h x w, q, q index). Raises CodecError when invalid."""
        payload = bytes(payload)
        if len(payload) < HEADER_BYTES + 8:
            raise CodecError(f"GIC payload too short ({len(payload)} bytes)")
        (word,) = struct.unpack(">H", payload[:HEADER_BYTES])
        version, q_index = word >> Q_BITS, word & (Q_LEVELS - 1)
        if version != FORMAT_VERSION:
            old = (" (format 1 rounded the means onto the q grid; re-encode the frame with "
                   "this version)" if version == 1 else "")
            raise CodecError(f"GIC payload format {version}, expected {FORMAT_VERSION}{old}")
        stream = payload[HEADER_BYTES:]
        if len(stream) % 4:
            raise CodecError(f"GIC rANS stream of {len(stream)} bytes is not whole 32-bit "
                             "words: truncated or corrupt")
        q = q_of_index(q_index, self.q_lo, self.q_hi)
        zhw = self.z_shape(latent_hw)
        n_z = len(self._z_len) * zhw[0] * zhw[1]
        n_y = channels * latent_hw[0] * latent_hw[1]
        if len(payload) > MAX_BYTES_PER_SYMBOL * (n_z + n_y) + 64:
            raise CodecError(f"GIC payload of {len(payload)} bytes is larger than any encoding "
                             f"of a {latent_hw[1] * 4}x{latent_hw[0] * 4} frame: corrupt")
        # Zero words after the stream bound what the (unchecked) decoder can read. Each
        # symbol or bypass-nibble decode renormalises by at most one word; bypass runs are
        # announced by 4-bit counts read from the data (at most 8 per word, 15 each), and
        # in the zero padding a run ends at once. So reads are below this generous bound.
        words = len(stream) // 4
        pad_words = 20 * (n_z + n_y) + 128 * (words + 2)
        dec = RansDecoder()
        dec.set_stream(stream + bytes(4 * pad_words))
        z_idx = self._z_indexes(len(self._z_len), zhw)
        z_sym = dec.decode_stream(z_idx, self._z_cdf, self._z_len, self._z_off)
        if max(map(abs, z_sym)) > Z_SYMBOL_LIMIT:
            raise CodecError("GIC payload decodes to out-of-range hyperprior symbols: corrupt")
        mu, sigma = self.params_from_symbols(z_sym, zhw)
        with one_thread():
            idx = self._y_indexes(sigma, q)
        y_idx = idx.reshape(-1).tolist()
        y_sym = dec.decode_stream(y_idx, self._y_cdf_rows, self._y_len, self._y_off)
        # Integrity: the canonical encoding of what we decoded must be the payload itself.
        if self._stream(z_sym, z_idx, y_sym, y_idx) != stream:
            raise CodecError("GIC payload is not a valid rANS stream for this model and frame "
                             "size (truncated, corrupt, or from another model)")
        r = torch.tensor(y_sym, dtype=torch.int64).view(1, channels, *latent_hw)
        with one_thread():
            y_hat = self.reconstruct(r, mu, q)
        return y_hat, q, q_index
