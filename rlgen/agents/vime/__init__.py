"""VIME: Variational Information Maximizing Exploration (Houthooft et al., 2016)."""

from rlgen.agents.vime.bnn import BayesianDynamicsModel, BayesianLinear
from rlgen.agents.vime.replay_pool import ReplayPool

__all__ = ["BayesianDynamicsModel", "BayesianLinear", "ReplayPool"]
from rlgen.agents.vime.vime import VIME

__all__ += ["VIME"]
