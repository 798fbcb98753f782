"""The deeper VAE of Kingma et al. 2016 (section 6, their CIFAR-10 model; openai/iaf ``tf_train.py``): a ResNet
with several stochastic layers and **bidirectional inference**.

* Bottom-up pass: ``x - 0.5`` -> ``5x5`` stride-2 convolution -> ``levels`` resolutions of ``blocks_per_level``
  :class:`IAFLayer` each (the first layer of every level after the first halves the resolution). Each layer's
  ``up`` computes ``[q_mean, q_logsd, up_context, h] = conv(elu(input))`` and returns
  ``input + 0.1 * conv(elu(h))``.
* Top-down pass: from a learned constant ``h_top``, the layers in reverse. Each layer's ``down`` computes
  ``[p_mean, p_logsd, r_mean, r_logsd, down_context, h_det] = conv(elu(input))``; the prior is
  ``N(p_mean, exp(p_logsd))``, the posterior ``N(q_mean + r_mean, exp(q_logsd + r_logsd))`` (bottom-up and top-down
  information combined); a sample ``z`` goes through ``iaf_steps`` :class:`~.iaf.ConvIAF` steps with context
  ``up_context + down_context`` (openai's ``ar_multiconv2d`` with ``[h, h]`` hidden layers, ordering reversed
  between steps); the KL of the layer is ``log q(z) - log p(z)`` per latent; the layer returns
  ``input + 0.1 * conv(elu([z, h_det]))`` (transposed convolution and nearest-neighbour upsampling of ``input``
  where ``up`` downsampled).
* Decoder output: ``elu`` -> ``5x5`` stride-2 transposed convolution -> Bernoulli logits or the discretised
  logistic's mean. Sampling draws each ``z`` from its prior top-down (no IAF: it only shapes the posterior).

Free bits are applied per feature map of each stochastic layer (openai's ``kl_min``). Images whose sides are not a
multiple of ``2 ** levels`` (MNIST's 28) are zero-padded to the next multiple (openai/iaf pads MNIST to 32); the
likelihood is only taken over the real pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlgen.vision.likelihood.iaf import ConvIAF
from rlgen.vision.likelihood.vae import HALF_LOG_2PI, VAEBase, VAEOptions, gaussian_log_prob, logistic_mean


class IAFLayer(nn.Module):
    """One stochastic ResNet layer with bottom-up and top-down halves (openai/iaf ``IAFLayer``)."""

    def __init__(self, h: int, z: int, downsample: bool, iaf_steps: int, iaf_depth: int):
        super().__init__()
        self.h, self.z, self.downsample = h, z, downsample
        stride = 2 if downsample else 1
        self.up_conv1 = nn.Conv2d(h, 2 * z + 2 * h, 3, stride=stride, padding=1)
        self.up_conv2 = nn.Conv2d(h, h, 3, padding=1)
        self.down_conv1 = nn.Conv2d(h, 4 * z + 2 * h, 3, padding=1)
        self.down_conv2 = (nn.ConvTranspose2d(z + h, h, 4, stride=2, padding=1) if downsample
                           else nn.Conv2d(z + h, h, 3, padding=1))
        self.iaf = ConvIAF(z, iaf_steps, [h] * iaf_depth) if iaf_steps else None

    def up(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The bottom-up half: the next map and this layer's ``(q_mean, q_logsd, up_context)``."""
        z, h = self.z, self.h
        q_mean, q_logsd, context, hidden = self.up_conv1(F.elu(x)).split([z, z, h, h], dim=1)
        hidden = self.up_conv2(F.elu(hidden))
        if self.downsample:
            x = x[:, :, ::2, ::2]  # nearest-neighbour halving
        return x + 0.1 * hidden, (q_mean, q_logsd, context)

    def _output(self, x: torch.Tensor, z: torch.Tensor, h_det: torch.Tensor) -> torch.Tensor:
        hidden = self.down_conv2(F.elu(torch.cat([z, h_det], dim=1)))
        if self.downsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x + 0.1 * hidden

    def down(self, x: torch.Tensor, up: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-down half with inference: the next map and ``log q(z|x) - log p(z)`` per latent."""
        z_ch, h = self.z, self.h
        q_mean, q_logsd, up_context = up
        p_mean, p_logsd, r_mean, r_logsd, down_context, h_det = self.down_conv1(F.elu(x)).split(
            [z_ch] * 4 + [h] * 2, dim=1)
        mean, logsd = q_mean + r_mean, q_logsd + r_logsd
        eps = torch.randn_like(mean)
        z = mean + torch.exp(logsd) * eps
        log_q = -HALF_LOG_2PI - logsd - 0.5 * eps ** 2
        if self.iaf is not None:
            z, log_det = self.iaf(z, up_context + down_context)
            log_q = log_q - log_det
        kl = log_q - gaussian_log_prob(z, p_mean, p_logsd)
        return self._output(x, z, h_det), kl

    def down_prior(self, x: torch.Tensor) -> torch.Tensor:
        """The top-down half when sampling: ``z`` from the prior."""
        z_ch, h = self.z, self.h
        p_mean, p_logsd, _, _, _, h_det = self.down_conv1(F.elu(x)).split([z_ch] * 4 + [h] * 2, dim=1)
        z = p_mean + torch.exp(p_logsd) * torch.randn_like(p_mean)
        return self._output(x, z, h_det)


class BidirectionalVAE(VAEBase):
    """ResNet VAE with ``levels * blocks_per_level`` stochastic layers and bidirectional inference."""

    def __init__(self, options: VAEOptions):
        super().__init__(options)
        c, height, width = options.image_shape
        h = options.hidden
        unit = 2 ** options.levels
        self.padded = (-(-height // unit) * unit, -(-width // unit) * unit)
        self.pad = ((self.padded[0] - height) // 2, (self.padded[1] - width) // 2)
        self.x_enc = nn.Conv2d(c, h, 5, stride=2, padding=2)
        self.layers = nn.ModuleList(
            IAFLayer(h, options.z_dim, downsample=i > 0 and j == 0, iaf_steps=options.iaf_steps,
                     iaf_depth=options.iaf_depth)
            for i in range(options.levels) for j in range(options.blocks_per_level))
        self.h_top = nn.Parameter(torch.zeros(h))
        self.x_dec = nn.ConvTranspose2d(h, c, 5, stride=2, padding=2, output_padding=1)
        self.top_size = (self.padded[0] // unit, self.padded[1] // unit)

    def _top(self, n: int) -> torch.Tensor:
        return self.h_top.view(1, -1, 1, 1).expand(n, -1, *self.top_size)

    def _decode_output(self, x: torch.Tensor) -> torch.Tensor:
        out = self.x_dec(F.elu(x))
        (ph, pw), (height, width) = self.pad, self.options.image_shape[1:]
        out = out[:, :, ph:ph + height, pw:pw + width]
        return out if self.binary else logistic_mean(out)

    def encode_decode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        ph, pw = self.pad
        inp = F.pad(x - 0.5, (pw, self.padded[1] - x.shape[3] - pw, ph, self.padded[0] - x.shape[2] - ph))
        hidden = self.x_enc(inp)
        ups = []
        for layer in self.layers:
            hidden, up = layer.up(hidden)
            ups.append(up)
        hidden = self._top(x.shape[0])
        kls = []
        for layer, up in zip(reversed(self.layers), reversed(ups)):
            hidden, kl = layer.down(hidden, up)
            kls.append(kl)
        return self._decode_output(hidden), kls

    def decode_prior(self, n: int) -> torch.Tensor:
        hidden = self._top(n)
        for layer in reversed(self.layers):
            hidden = layer.down_prior(hidden)
        return self._decode_output(hidden)
