"""GAIL: Generative Adversarial Imitation Learning (Ho & Ermon, 2016)."""

from rlgen.agents.gail.discriminator import Discriminator, discriminator_loss, reward_from_logits
from rlgen.agents.gail.gail import GAIL
from rlgen.common.normalization import ObsNormExtractor, RunningNorm, obs_norm_policy_kwargs

__all__ = ["GAIL", "Discriminator", "ObsNormExtractor", "RunningNorm", "discriminator_loss",
           "obs_norm_policy_kwargs", "reward_from_logits"]
