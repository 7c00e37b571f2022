"""Real bytes for BADiff: an image coded with H_phi's own discretised-logistic probabilities
through compressai's rANS (paper 000 §3.3: the entropy model *is* the coder's model).

Payload (all of it crosses the link; the decoder needs only the frame shape):

    byte 0    (FORMAT_VERSION << 6) | delta index (0..47 into entropy_predictor.DELTAS)
    bytes 1-  one compressai rANS stream (32-bit words): the hyperprior symbols z, then the
              six passes (checkerboard anchors R, G, B, then non-anchors R, G, B)

Predictive quantisation (closed-loop DPCM): each channel value x is sent as the residual
symbol k = round((x - mu) / delta) against the model's mean mu, and the receiver's value
is clip(round(mu + k delta), 0, 255). delta index 0 (delta = 1) is lossless up to float
ties; coarser steps are the rate-control knob: where k = 0 the pixel takes its predicted
value (hyperprior + decoded context), so low rates blur instead of posterising.

Probabilities. k is coded under a discretised logistic with scale s / delta, quantised to
one of 64 log-spaced table scales; the CDF tables are built once with compressai's
``pmf_to_quantized_cdf`` exactly as its GaussianConditional builds ``_quantized_cdf``;
values beyond a table's range take compressai's escape (bypass) path.

Decode is six parallel passes (checkerboard x channel context), not pixel-sequential:
z -> hyper features -> per pass: parameters of the pass's elements from what is decoded
-> its symbols. Both ends compute the parameters with the *same*
float64 copy of the network on the *same* tensors (the integer z symbols, the decoded
values), on one CPU thread, so the table indexes and means agree bit for bit across
processes (the lesson of GIC's bitstream: float32 kernels flipped a rounding once per
~400 frames). A decoded stream is re-encoded and must reproduce the payload byte for
byte, so a corrupt or truncated payload raises ``CodecError`` instead of a wrong image.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from compressai._CXX import pmf_to_quantized_cdf
from compressai.ans import BufferedRansEncoder, RansDecoder

from diffstream.codecs.badiff.entropy_predictor import (
    DELTAS,
    HYPER_DOWN,
    EntropyPredictor,
    pass_masks,
)
from diffstream.codecs.badiff.samplers import one_thread
from diffstream.codecs.base import CodecError
from diffstream.codecs.ratecontrol import RateModel, RateSearch, TableModel, fit_budget

FORMAT_VERSION = 1
PRECISION = 16
N_SCALES, S_MIN, S_MAX = 64, 0.02, 64.0  # table scales s / delta
TAIL = 1e-7
MAX_R = 300  # |r| beyond any real symbol (k <= 255)
MAX_PASSES = 8  # real encodes per rate search (plus the coarsest, to settle a skip)


@lru_cache(maxsize=1)
def tables() -> tuple[list[list[int]], list[int], list[int], np.ndarray]:
    """(cdfs, cdf lengths, offsets, log2-pmf matrix) for the 64 residual scale tables.

    Table i codes k with P(k) = sigmoid((k + 1/2) / s_i) - sigmoid((k - 1/2) / s_i),
    s_i = (s / delta) on a log grid. Symbols outside a table take compressai's escape: the
    tail symbol, then a 4-bit chunk count and the value in 4-bit bypass chunks; their
    log2 "probability" in the matrix is that cost, so the estimate matches the stream.
    """
    cdfs, lengths, offsets = [], [], []
    log2p = np.zeros((N_SCALES, 2 * MAX_R + 1))
    rr = np.arange(-MAX_R, MAX_R + 1)
    for si in range(N_SCALES):
        s = S_MIN * (S_MAX / S_MIN) ** (si / (N_SCALES - 1))
        half = min(int(math.ceil(s * math.log(1 / TAIL) + 1)), MAX_R)
        r = np.arange(-half, half + 1, dtype=np.float64)
        pmf = 1 / (1 + np.exp(-(r + 0.5) / s)) - 1 / (1 + np.exp(-(r - 0.5) / s))
        tail = max(1.0 - float(pmf.sum()), TAIL)
        cdf = pmf_to_quantized_cdf([*pmf.tolist(), tail], PRECISION)
        cdfs.append(cdf)
        lengths.append(len(cdf))
        offsets.append(-half)
        freq = np.diff(np.asarray(cdf, dtype=np.float64)) / float(1 << PRECISION)
        over = np.where(rr < -half, 2 * (-half - rr) - 1, 2 * (rr - half - 1))  # compressai
        chunks = 1 + np.ceil(np.log2(np.maximum(over, 1) + 1) / 4)
        log2p[si] = np.log2(max(freq[-1], 1e-12)) - 4 * chunks
        log2p[si, MAX_R - half:MAX_R + half + 1] = np.log2(np.maximum(freq[:-1], 1e-12))
    return cdfs, lengths, offsets, log2p


def scale_indexes(log_s: torch.Tensor, delta: float) -> torch.Tensor:
    """Table index of s / delta per element (float64 math)."""
    ls = log_s.double() - math.log(delta)
    si = torch.round((ls - math.log(S_MIN)) / (math.log(S_MAX) - math.log(S_MIN))
                     * (N_SCALES - 1))
    return torch.clamp(si, 0, N_SCALES - 1).long()


@dataclass
class Analysis:
    """The delta-independent part of one image: z symbols and hyper features."""

    x: np.ndarray  # 3 x H x W float64 levels
    z_symbols: list[int]
    hyper: torch.Tensor  # 1 x C x H x W float64
    z_bits: float  # ideal bits of z under the factorised prior


class LogisticCoder:
    """Encode/decode uint8 images with an EntropyPredictor's probabilities."""

    def __init__(self, predictor: EntropyPredictor) -> None:
        with torch.no_grad(), one_thread():
            eb = copy.deepcopy(predictor.entropy_bottleneck).cpu().float().eval()
            eb.update(force=True)
        self._eb = eb
        self._h_a = copy.deepcopy(predictor.h_a).cpu().float().eval()
        self._net = copy.deepcopy(predictor).cpu().double().eval()
        self._z_cdf = eb.quantized_cdf.tolist()
        self._z_len = eb.cdf_length.reshape(-1).int().tolist()
        self._z_off = eb.offset.reshape(-1).int().tolist()
        self._med = eb._get_medians().detach().reshape(-1).double()
        self._cdfs, self._lens, self._offs, self._log2p = tables()

    # --- shared by both ends ----------------------------------------------------------
    def _hyper(self, z_symbols: list[int], zhw: tuple[int, int]) -> torch.Tensor:
        zs = torch.tensor(z_symbols, dtype=torch.float64).view(1, -1, *zhw)
        return self._net.h_s(zs + self._med.view(1, -1, 1, 1))

    def _params(self, hyper: torch.Tensor, rec: torch.Tensor, known: torch.Tensor,
                delta: float) -> tuple[torch.Tensor, torch.Tensor]:
        ld = torch.tensor([math.log(delta)], dtype=torch.float64)
        return self._net.params(hyper, rec * known, known, ld)

    def _z_indexes(self, zhw: tuple[int, int]) -> list[int]:
        return np.repeat(np.arange(len(self._z_len)), zhw[0] * zhw[1]).tolist()

    @staticmethod
    def _check_shape(h: int, w: int) -> None:
        if h < HYPER_DOWN or w < HYPER_DOWN or h % HYPER_DOWN or w % HYPER_DOWN:
            raise ValueError(f"frame sides must be multiples of {HYPER_DOWN}, got {w}x{h}")

    # --- encoder ----------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, image: np.ndarray) -> Analysis:
        h, w = image.shape[:2]
        self._check_shape(h, w)
        x = image.astype(np.float64).transpose(2, 0, 1)
        with one_thread():
            z = self._h_a(torch.from_numpy(x).float()[None] / 127.5 - 1.0)
            zs = torch.round(z.double() - self._med.view(1, -1, 1, 1))
            z_symbols = zs.long().reshape(-1).tolist()
            hyper = self._hyper(z_symbols, tuple(z.shape[2:]))
            z_hat = (zs + self._med.view(1, -1, 1, 1)).float()
            lik, _, _ = self._eb._likelihood(
                z_hat.permute(1, 0, 2, 3).reshape(z.shape[1], 1, -1), stop_gradient=True)
            z_bits = float(-torch.log2(lik.clamp_min(1e-9)).sum())
        return Analysis(x=x, z_symbols=z_symbols, hyper=hyper, z_bits=z_bits)

    @torch.no_grad()
    def _symbols(self, a: Analysis, di: int) -> tuple[list[int], list[int], np.ndarray]:
        """(symbols, table indexes, reconstruction) at delta index di, in pass order: the
        closed loop of EntropyPredictor.quantise in float64 with the table indexes."""
        delta = DELTAS[di]
        _, h, w = a.x.shape
        x = torch.from_numpy(a.x)[None]
        rec = torch.zeros_like(x)
        syms: list[int] = []
        idxs: list[int] = []
        with one_thread():
            for known, target in pass_masks(h, w, torch.float64):
                mu, ls = self._params(a.hyper, rec, known, delta)
                sel = target.bool()
                k = torch.round((x[sel] - mu[sel]) / delta)
                rec[sel] = torch.clamp(torch.round(mu[sel] + k * delta), 0, 255)
                syms += k.long().tolist()
                idxs += scale_indexes(ls[sel], delta).tolist()
        return syms, idxs, rec[0].numpy().astype(np.uint8).transpose(1, 2, 0)

    def _stream(self, z_symbols: list[int], zhw: tuple[int, int], syms: list[int],
                idxs: list[int]) -> bytes:
        enc = BufferedRansEncoder()
        enc.encode_with_indexes(z_symbols, self._z_indexes(zhw), self._z_cdf, self._z_len,
                                self._z_off)
        enc.encode_with_indexes(syms, idxs, self._cdfs, self._lens, self._offs)
        return enc.flush()

    def encode(self, a: Analysis, di: int) -> tuple[bytes, np.ndarray]:
        """(payload, the image the receiver will decode) at delta index di."""
        _, h, w = a.x.shape
        syms, idxs, rec = self._symbols(a, di)
        zhw = (h // HYPER_DOWN, w // HYPER_DOWN)
        return bytes([(FORMAT_VERSION << 6) | di]) + self._stream(a.z_symbols, zhw, syms,
                                                                  idxs), rec

    def estimate_bits(self, a: Analysis, di: int) -> float:
        """Ideal code length with the coder's quantised tables (no rANS overhead)."""
        syms, idxs, _ = self._symbols(a, di)
        r = np.clip(np.asarray(syms, dtype=np.int64), -MAX_R, MAX_R) + MAX_R
        return a.z_bits + 8 + float(-self._log2p[np.asarray(idxs), r].sum())

    def fit(self, a: Analysis, budget_bits: int, lo: int = 0, model: RateModel | None = None
            ) -> tuple[bytes | None, np.ndarray | None, int, RateSearch]:
        """Finest delta index >= lo whose real payload fits: (payload, image, index, search).

        ``codecs.ratecontrol.fit_budget`` over the knob ``last - index`` (sizes fall, nearly
        monotonically, with delta, so they grow with the knob), guided by ``model`` (bits
        per knob; the caller's, carried across frames) or, without one, a flat model (the
        first probe is then the finest step, and later ones interpolate between probes).
        Every probe is kept and the largest fitting payload wins. Payload None (index: the
        coarsest step) when even the coarsest step does not fit.
        """
        last = len(DELTAS) - 1
        top = last - int(lo)
        recs: dict[int, np.ndarray] = {}

        def encode(knob: int) -> bytes:
            payload, recs[knob] = self.encode(a, last - knob)
            return payload

        found = fit_budget(encode, int(budget_bits), 0, top,
                           model or TableModel({0: 1.0, top: 1.0}), max_probes=MAX_PASSES)
        if found.knob is None:
            return None, None, last, found
        return found.payload, recs[found.knob], last - found.knob, found

    # --- decoder ----------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, payload: bytes, shape: tuple[int, int]) -> np.ndarray:
        """Payload -> H x W x 3 uint8; CodecError on anything invalid."""
        h, w = (int(v) for v in shape)
        try:
            self._check_shape(h, w)
        except ValueError as exc:
            raise CodecError(str(exc)) from None
        payload = bytes(payload)
        if len(payload) < 5:
            raise CodecError(f"BADiff payload too short ({len(payload)} bytes)")
        version, di = payload[0] >> 6, payload[0] & 63
        if version != FORMAT_VERSION or di >= len(DELTAS):
            raise CodecError(f"BADiff payload header {payload[0]:#x}: unknown format/step")
        stream = payload[1:]
        if len(stream) % 4:
            raise CodecError("BADiff rANS stream is not whole 32-bit words: truncated")
        delta = DELTAS[di]
        zhw = (h // HYPER_DOWN, w // HYPER_DOWN)
        n_sym = len(self._z_len) * zhw[0] * zhw[1] + 3 * h * w
        if len(stream) > 8 * n_sym + 64:
            raise CodecError("BADiff payload larger than any encoding of this frame size")
        dec = RansDecoder()
        # zero words bound what compressai's unchecked decoder can read (as in GIC)
        dec.set_stream(stream + bytes(4 * (20 * n_sym + 128 * (len(stream) // 4 + 2))))
        z_idx = self._z_indexes(zhw)
        z_symbols = dec.decode_stream(z_idx, self._z_cdf, self._z_len, self._z_off)
        if max(map(abs, z_symbols)) > 1 << 15:
            raise CodecError("BADiff payload decodes to out-of-range hyperprior symbols")
        rec = torch.zeros(1, 3, h, w, dtype=torch.float64)
        all_syms: list[int] = []
        all_idx: list[int] = []
        with one_thread():
            hyper = self._hyper(z_symbols, zhw)
            for known, target in pass_masks(h, w, torch.float64):
                mu, ls = self._params(hyper, rec, known, delta)
                sel = target.bool()
                idx = scale_indexes(ls[sel], delta).tolist()
                syms = dec.decode_stream(idx, self._cdfs, self._lens, self._offs)
                k = torch.tensor(syms, dtype=torch.float64)
                if k.numel() and float(k.abs().max()) > 256 / delta + 2:
                    raise CodecError("BADiff payload decodes to out-of-range residuals: corrupt")
                rec[sel] = torch.clamp(torch.round(mu[sel] + k * delta), 0, 255)
                all_syms += syms
                all_idx += idx
        if self._stream(z_symbols, zhw, all_syms, all_idx) != stream:
            raise CodecError("BADiff payload is not a valid stream for this model and frame "
                             "size (truncated, corrupt, or from another model)")
        return rec[0].numpy().astype(np.uint8).transpose(1, 2, 0)
