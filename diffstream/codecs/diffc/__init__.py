"""DiffC (paper 002): lossy compression with a pixel DDPM by reverse-channel coding.

Modules, one job each: ``prng`` (shared counter-based randomness), ``fused`` (the C PFR
scoring kernel), ``pfr`` (Poisson functional representation), ``diffusion`` (step
posteriors, KL, denoisers), ``rangecoder`` (a range coder with a <= 2-byte flush),
``bitstream`` (check byte, chunk counts and index code, exact prefixes), ``schedule``
(Algorithm 3, KL table, chunk models, calibration file), ``calibrate`` (the CLI that
regenerates it) and ``codec`` (the registered ``diffc`` codec).
"""

from diffstream.codecs.diffc.codec import DiffcCodec

__all__ = ["DiffcCodec"]
