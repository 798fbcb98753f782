"""The likelihood-based image models of 2016, one model per module, each an ``nn.Module`` with ``loss(batch)`` and
``sample(n)`` trained by the shared :class:`~rlgen.vision.trainer.Trainer`:

* :mod:`.vae` -- convolutional VAE, diagonal-Gaussian or IAF posterior (:class:`ConvVAE`), free bits,
  importance-sampled ``log p(x)``; :mod:`.ladder` -- the deeper ResNet VAE with several stochastic layers and
  bidirectional inference (:class:`BidirectionalVAE`); :mod:`.iaf` -- MADE, IAF steps, openai's ``ar_multiconv2d``
* :mod:`.pixelcnn` -- PixelCNN; :mod:`.pixelrnn` -- Row LSTM and Diagonal BiLSTM PixelRNNs
* :mod:`.masked` -- masked convolutions (types A/B, colour groups); :mod:`.outputs` -- Bernoulli, 256-way softmax,
  discretised logistic, nats and bits per dimension; :mod:`.reference` -- straightforward implementations used to
  check and time the vectorised ones
"""

from rlgen.vision.likelihood.iaf import IAF, MADE, ConvIAF, IAFStep
from rlgen.vision.likelihood.ladder import BidirectionalVAE
from rlgen.vision.likelihood.masked import MaskedConv2d
from rlgen.vision.likelihood.outputs import bits_per_dim_to_nats, nats_to_bits_per_dim
from rlgen.vision.likelihood.pixelcnn import PixelCNN, PixelCNNOptions
from rlgen.vision.likelihood.pixelrnn import PixelRNN, PixelRNNOptions
from rlgen.vision.likelihood.vae import ConvVAE, VAEBase, VAEOptions


def make_vae(options: VAEOptions) -> VAEBase:
    """:class:`BidirectionalVAE` when ``options.bidirectional``, else :class:`ConvVAE`."""
    return BidirectionalVAE(options) if options.bidirectional else ConvVAE(options)


__all__ = ["IAF", "MADE", "BidirectionalVAE", "ConvIAF", "ConvVAE", "IAFStep", "MaskedConv2d", "PixelCNN",
           "PixelCNNOptions", "PixelRNN", "PixelRNNOptions", "VAEBase", "VAEOptions", "bits_per_dim_to_nats",
           "make_vae", "nats_to_bits_per_dim"]
