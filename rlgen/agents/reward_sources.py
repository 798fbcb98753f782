"""The learned reward of each on-policy command that has one, built from the run's configuration and the SB3
model whose rollouts it relabels (:class:`~rlgen.common.reward_relabel.RewardRelabelCallback`).

* ``vime``: the env's reward plus ``eta`` times VIME's normalised information gain (config section ``vime``);
* ``gail``: GAIL's discriminator reward (section ``discriminator``) on the expert pairs the command loaded, plus,
  with ``vime.eta > 0``, VIME's exploration bonus weighted by ``eta``
  (:class:`~rlgen.common.reward_sum.RewardSum`).

A command without an entry (``ppo``, ``trpo``, ``expert``) trains on the env's reward. A new reward source is
a function here and its entry in :data:`REWARD_SOURCES`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from rlgen.common.reward_relabel import RewardSource

log = logging.getLogger("rlgen")


def vime_reward(model: Any, cfg: dict[str, Any], device: str) -> RewardSource:
    from rlgen.agents.vime import VIME

    return VIME(model, seed=cfg["seed"], **cfg["vime"])


def gail_reward(model: Any, cfg: dict[str, Any], device: str, expert_obs: np.ndarray,
                expert_actions: np.ndarray) -> RewardSource:
    from rlgen.agents.gail import GAIL

    gail = GAIL(expert_obs, expert_actions, model.observation_space, model.action_space, model=model,
                seed=cfg["seed"], device=device, **cfg["discriminator"])
    vime = dict(cfg.get("vime") or {})
    eta = float(vime.pop("eta", 0.0))
    if eta == 0:
        return gail
    from rlgen.agents.vime import VIME
    from rlgen.common.reward_sum import RewardSum

    log.info("GAIL's reward plus VIME's exploration bonus (eta %g)", eta)
    bonus = VIME(model, eta=1.0, extrinsic=False, seed=cfg["seed"], **vime)
    return RewardSum({"gail": (1.0, gail), "vime": (eta, bonus)})


#: command -> builder ``(model, cfg, device, **what the command loaded) -> RewardSource``
REWARD_SOURCES: dict[str, Callable[..., RewardSource]] = {"vime": vime_reward, "gail": gail_reward}


def reward_source_for(cfg: dict[str, Any], device: str, **context: Any) -> Callable[[Any], RewardSource] | None:
    """What :func:`~rlgen.common.sb3_training.train_sb3` calls with the model to build the run's learned reward,
    or None for a command that trains on the env's reward."""
    build = REWARD_SOURCES.get(cfg["command"])
    if build is None:
        return None
    return lambda model: build(model, cfg, device, **context)
