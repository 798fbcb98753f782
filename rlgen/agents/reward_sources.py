"""The learned reward of each on-policy command that has one, built from the run's configuration and the SB3
model whose rollouts it relabels (:class:`~rlgen.common.reward_relabel.RewardRelabelCallback`).

* ``vime``: the env's reward plus ``eta`` times VIME's normalised information gain (config section ``vime``);
* ``gail``: GAIL's discriminator reward (section ``discriminator``) on the expert pairs the command loaded, plus,
  with ``vime.eta > 0``, VIME's exploration bonus weighted by ``eta``
  (:class:`~rlgen.common.reward_sum.RewardSum`).

A command without an entry (``ppo``, ``trpo``, ``expert``) trains on the env's reward. A new reward source is
a function here and its entry in :data:`REWARD_SOURCES`; the ``check_*_options`` functions check the config sections
before a run directory is made.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rlgen.common.reward_relabel import RewardSource

log = logging.getLogger("rlgen")


def vime_reward(model: Any, cfg: dict[str, Any], device: str) -> RewardSource:
    from rlgen.agents.vime import VIME

    return VIME(model, seed=cfg["seed"], **cfg["vime"])


def gail_reward(model: Any, cfg: dict[str, Any], device: str, expert_obs: np.ndarray,
                expert_actions: np.ndarray, expert_absorbing_share: float = 0.0,
                expert_transitions: Any = None) -> RewardSource:
    """GAIL's discriminator (plus VIME's bonus with ``vime.eta``). With ``expert_replay`` (an off-policy generator),
    ``expert_transitions`` (the demos' chosen episodes) also fill that share of every replay minibatch."""
    from rlgen.agents.gail import GAIL

    if cfg.get("expert_replay"):
        demos = expert_transitions
        model.replay_buffer.share_expert_transitions(demos.obs, model.policy.scale_action(demos.actions),
                                                     demos.next_obs, demos.terminated, cfg["expert_replay"])
    options = dict(cfg["discriminator"])
    if options.get("absorbing"):
        options["expert_absorbing_share"] = expert_absorbing_share
    gail = GAIL(expert_obs, expert_actions, model.observation_space, model.action_space,
                seed=cfg["seed"], device=device, **options)
    vime = dict(cfg.get("vime") or {})
    eta = float(vime.pop("eta", 0.0))
    if eta == 0:
        return gail
    from rlgen.agents.vime import VIME
    from rlgen.common.reward_sum import RewardSum

    log.info("GAIL's reward plus VIME's exploration bonus (eta %g)", eta)
    bonus = VIME(model, eta=1.0, extrinsic=False, seed=cfg["seed"], **vime)
    return RewardSum({"gail": (1.0, gail), "vime": (eta, bonus)})


def discriminator_defaults() -> dict[str, Any]:
    """GAIL's keyword arguments that a config's ``discriminator`` section sets, with GAIL's defaults."""
    from rlgen.agents.gail import GAIL
    from rlgen.common.config import keyword_defaults

    return keyword_defaults(GAIL, exclude=("seed", "device", "expert_absorbing_share"))  # the demos say the last


def vime_defaults() -> dict[str, Any]:
    """VIME's keyword arguments that a config's ``vime`` section sets, with VIME's defaults (``extrinsic`` is the
    command's to choose: the env's reward for ``rlgen vime``, GAIL's for ``rlgen gail``)."""
    from rlgen.agents.vime import VIME
    from rlgen.common.config import keyword_defaults

    return keyword_defaults(VIME, exclude=("seed", "extrinsic"))


def check_discriminator_options(options: Any, known: dict[str, Any]) -> None:
    """A typo or a bad value in the config file's ``discriminator`` section fails here, before a run directory
    is made, not as a traceback from the discriminator's constructor."""
    from rlgen.agents.gail.discriminator import ACTIVATIONS, REWARD_TYPES
    from rlgen.common.config import check_known_keys
    from rlgen.common.errors import UserError

    if not isinstance(options, dict):
        raise UserError(f"discriminator must be a mapping of options ({', '.join(known)}), got {options!r}")
    check_known_keys(options, known, "the discriminator section")
    for key, allowed in (("reward", REWARD_TYPES), ("activation", ACTIVATIONS)):
        if options[key] not in allowed:
            raise UserError(f"discriminator {key} {options[key]!r} is not one of {', '.join(allowed)}")
    sizes = options["hidden_sizes"]
    if not (isinstance(sizes, list) and all(isinstance(n, int) and n > 0 for n in sizes)):
        raise UserError(f"discriminator hidden_sizes must be a list of positive integers, got {sizes!r}")


def check_vime_options(options: Any, eta_flag: str = "--vime-eta") -> None:
    """A ``vime`` section (``rlgen vime``'s, or GAIL's bonus): VIME's keyword arguments, with a finite ``eta >= 0``
    (set by ``eta_flag`` on the command line)."""
    from rlgen.common.config import check_known_keys
    from rlgen.common.errors import UserError

    if not isinstance(options, dict):
        raise UserError(f"vime must be a mapping of VIME options (eta, ...), got {options!r}")
    check_known_keys(options, vime_defaults(), "the vime section")
    eta = options.get("eta", 0.0)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta < 0:
        raise UserError(f"vime eta must be a finite number >= 0, got {eta!r}; fix {eta_flag} or the config file")


#: command -> builder ``(model, cfg, device, **what the command loaded) -> RewardSource``
REWARD_SOURCES: dict[str, Callable[..., RewardSource]] = {"vime": vime_reward, "gail": gail_reward}


def reward_source_for(cfg: dict[str, Any], device: str, **context: Any) -> Callable[[Any], RewardSource] | None:
    """What :func:`~rlgen.common.sb3_training.train_sb3` calls with the model to build the run's learned reward,
    or None for a command that trains on the env's reward."""
    build = REWARD_SOURCES.get(cfg["command"])
    if build is None:
        return None
    return lambda model: build(model, cfg, device, **context)
