"""The small image autoencoder that stands in for the paper's pretrained 4x VAE (§3.3).

GIC (paper 003) codes the latent of a frozen Stable-Diffusion-family VAE (KL-f4: 4x spatial
downsampling, 3 channels). Downloading it is not allowed here and it is far too slow for
2-core CPUs, so we train our own: analysis E: 3 x H x W -> C x H/4 x W/4 and synthesis
D: back, plain convolutions and residual blocks, trained jointly with the hyperprior for
reconstruction (MSE) plus a small rate term, with latent-noise augmentation (the analogue
of a KL-VAE's noisy decoder input; see ``diffstream.codecs.gic.train.train_ae``) and then
frozen. The entropy model and the reverse network live in its latent space, exactly as in
the paper; the autoencoder is ours and much smaller (the shipped one has 12 latent
channels rather than the KL-f4 VAE's 3).

The latent is *normalised*: ``encode`` returns (E(x) - mean) / std per channel, with the
statistics measured over the training crops after the autoencoder is trained. The GIC
quantization scale q is therefore measured in units of the latent's standard deviation
(see diffstream/codecs/gic/model.py for why that is how we map the paper's q values).
"""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(act(conv(act(x))))."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    """2x sub-pixel upsampling (conv to 4x channels + PixelShuffle): no checkerboard."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class AutoEncoder(nn.Module):
    """E: image in [-1, 1] -> latent (C x H/4 x W/4); D: latent -> image.

    widths: channels at full, 1/2 and 1/4 resolution.
    """

    factor = 4  # spatial downsampling (the VAE adapter in vae.py has the same attribute)

    def __init__(self, latent_channels: int = 8, widths: tuple[int, int, int] = (32, 64, 96)
                 ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.latent_channels = latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w1, 3, padding=1), nn.GELU(),
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), ResBlock(w2),
            nn.Conv2d(w2, w3, 3, stride=2, padding=1), ResBlock(w3), ResBlock(w3),
            nn.GELU(), nn.Conv2d(w3, latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, w3, 3, padding=1), ResBlock(w3), ResBlock(w3),
            nn.GELU(), Upsample(w3, w2), ResBlock(w2),
            nn.GELU(), Upsample(w2, w1),
            nn.GELU(), nn.Conv2d(w1, 3, 3, padding=1),
        )
        # Latent normalisation, set after training (identity until then).
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    def encode_raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode_raw(self, y: torch.Tensor) -> torch.Tensor:
        return self.decoder(y)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] (N x 3 x H x W, H and W divisible by 4) -> normalised latent."""
        y = self.encoder(x)
        return (y - self.latent_mean.view(1, -1, 1, 1)) / self.latent_std.view(1, -1, 1, 1)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised latent -> image in [-1, 1] (not clamped)."""
        y = y * self.latent_std.view(1, -1, 1, 1) + self.latent_mean.view(1, -1, 1, 1)
        return self.decoder(y)
