"""GANs: DCGAN and the Improved-GAN techniques, one idea per module.

* :mod:`.dcgan` -- the DCGAN networks and the GAN game (:class:`DCGAN`, :class:`GANOptions`)
* :mod:`.feature_matching`, :mod:`.minibatch_discrimination`, :mod:`.historical_averaging`,
  :mod:`.labels` (one-sided label smoothing, label noise), :mod:`.virtual_batch_norm` -- Salimans et al. 2016
* :mod:`.minibatch_std` -- Karras et al. 2018; :mod:`.unrolled` -- Metz et al. 2017
"""

from rlgen.vision.gan.dcgan import DCGAN, Discriminator, GANOptions, Generator

__all__ = ["DCGAN", "Discriminator", "GANOptions", "Generator"]
