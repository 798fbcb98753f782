"""rlgen: reinforcement learning with generative components (VIME, GAIL, 2016-era image generative models)."""

__version__ = "0.1.0"

# Importing the package registers the rlgen/... gymnasium environments.
from rlgen import envs as _envs  # noqa: F401
