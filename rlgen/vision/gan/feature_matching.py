"""Feature matching (Salimans et al. 2016, section 3.1).

The generator minimises the distance between the mean discriminator features of real and generated images instead
of fooling the discriminator's output. As in openai/improved-gan (``loss_gen = T.mean(T.square(mom_gen - mom_real))``)
the distance is the *mean* over features of the squared difference (the paper writes the squared L2 norm; they
differ by the constant number of features). The features are the discriminator's last hidden layer (the flattened
output of its last convolutional block). Real features are treated as constants (no gradient to the
discriminator). Deviation: the original draws a second real batch for the generator; the batch of the
discriminator step is reused here.
"""

from __future__ import annotations

import torch


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """``mean_k (mean_i f_k(x_i) - mean_j f_k(G(z_j)))^2`` with ``real_features`` detached."""
    real_mean = real_features.detach().float().flatten(1).mean(dim=0)
    fake_mean = fake_features.float().flatten(1).mean(dim=0)
    return (real_mean - fake_mean).square().mean()
