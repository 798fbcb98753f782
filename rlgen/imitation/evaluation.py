"""How every imitation command reports a policy: its return, the random policy's, and the normalised return.

* **Return**: undiscounted env return over ``episodes`` deterministic episodes (at least 10 by default) on a
  fresh env seeded ``seed + 10_000`` -- the same procedure :func:`rlgen.common.sb3_training.train_sb3`
  uses for ``summary.json``'s ``eval_return_mean``, so ``expert``, ``gail`` and ``bc`` numbers compare.
* **Random return**: measured, never assumed: the same episodes run with actions drawn uniformly from the
  action space.
* **Normalised return**: ``(return - random) / (expert - random)``: 0 is the random policy, 1 the expert
  (the expert's return is the mean return of the demonstrations' episodes unless given).

:func:`load_policy` opens an SB3 model zip (an ``rlgen expert``/``gail``/``bc`` run directory or any zip) for
rollouts and evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlgen.common.errors import UserError

log = logging.getLogger("rlgen")

EVAL_SEED_OFFSET = 10_000  # as in rlgen.common.sb3_training._summarise


class RandomPolicy:
    """Uniformly random actions, with SB3's ``predict`` signature (so :func:`evaluate_policy` can run it)."""

    def __init__(self, action_space: spaces.Space, seed: int = 0):
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = False) -> tuple[np.ndarray, None]:
        n = len(observation)
        return np.stack([self.action_space.sample() for _ in range(n)]), None


def evaluate_returns(policy: Any, env_id: str, episodes: int = 10, seed: int = 0,
                     deterministic: bool = True) -> dict[str, Any]:
    """Run ``policy`` (an SB3 model or anything with its ``predict``) for ``episodes`` episodes.

    Returns ``return_mean``, ``return_std``, ``returns`` and ``lengths``.
    """
    from stable_baselines3.common.evaluation import evaluate_policy

    from rlgen.common.sb3_training import make_vec_env_for

    if episodes < 1:
        raise UserError(f"evaluation needs at least one episode, got {episodes}")
    env = make_vec_env_for(env_id, 1, seed + EVAL_SEED_OFFSET)
    try:
        returns, lengths = evaluate_policy(policy, env, n_eval_episodes=episodes, deterministic=deterministic,
                                           return_episode_rewards=True, warn=False)
    finally:
        env.close()
    returns = [float(r) for r in returns]
    return {"return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)), "returns": returns,
            "lengths": [int(n) for n in lengths], "episodes": episodes, "deterministic": deterministic}


def random_policy_returns(env_id: str, episodes: int = 10, seed: int = 0) -> dict[str, Any]:
    """The random policy's returns on the same episodes :func:`evaluate_returns` runs."""
    from rlgen.common.sb3_training import make_env

    env = make_env(env_id)
    action_space = env.action_space
    env.close()
    return evaluate_returns(RandomPolicy(action_space, seed), env_id, episodes, seed, deterministic=False)


def normalised_return(value: float, random: float, expert: float) -> float | None:
    """``(value - random) / (expert - random)``; ``None`` when the expert is no better than random."""
    if any(x is None or not math.isfinite(x) for x in (value, random, expert)) or expert - random <= 1e-8:
        return None
    return float((value - random) / (expert - random))


def imitation_report(policy: Any, env_id: str, episodes: int, seed: int, expert_return: float | None,
                     policy_eval: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures ``gail``/``bc`` add to ``summary.json``: the policy's return (``policy_eval`` when it was
    already measured with :func:`evaluate_returns`' procedure), the measured random return, the expert return
    and the normalised return."""
    ev = policy_eval if policy_eval is not None else evaluate_returns(policy, env_id, episodes, seed)
    rnd = random_policy_returns(env_id, episodes, seed)
    return {
        "eval_return_mean": ev["return_mean"], "eval_return_std": ev["return_std"], "eval_episodes": episodes,
        "random_return_mean": rnd["return_mean"], "expert_return_mean": expert_return,
        "normalised_return": normalised_return(ev["return_mean"], rnd["return_mean"],
                                               expert_return if expert_return is not None else float("nan")),
    }


# ------------------------------------------------------------------------------------------- loading models
def _algorithm_classes() -> dict[str, type[BaseAlgorithm]]:
    from sb3_contrib import TRPO
    from stable_baselines3 import A2C, DQN, PPO, SAC, TD3

    return {"ppo": PPO, "trpo": TRPO, "a2c": A2C, "sac": SAC, "td3": TD3, "dqn": DQN, "bc": PPO}


def _algo_of(zip_path: Path) -> str | None:
    """The algorithm that saved ``zip_path``: from the run directory's config.json, else from the policy class
    recorded in the zip (actor-critic policies load as PPO, which is all prediction needs)."""
    config = zip_path.parent / "config.json"
    if config.is_file():
        try:
            algo = json.loads(config.read_text()).get("algo")
        except (OSError, json.JSONDecodeError):
            algo = None
        if isinstance(algo, str) and algo in _algorithm_classes():
            return algo
    try:
        with zipfile.ZipFile(zip_path) as zf:
            data = json.loads(zf.read("data"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError):
        return None
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    for name in ("sac", "td3", "dqn"):
        if f".{name}." in f".{module}.":
            return name
    return "ppo"


def load_policy(path: str | os.PathLike, env_id: str | None = None, device: str = "cpu") -> BaseAlgorithm:
    """Load an SB3 model zip for prediction: ``path`` is the zip or an rlgen run directory (its ``model.zip``).

    The zip's weights load with ``torch.load(weights_only=True)``; SB3 still unpickles the spaces and policy
    class stored in its JSON, so load only models you trust. With ``env_id`` the model's spaces must match
    the env's.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "model.zip").is_file():
            raise UserError(f"--policy {path} is a directory without model.zip; pass a model zip or a finished "
                            "rlgen expert/gail/bc run directory")
        path = path / "model.zip"
    if not path.is_file():
        raise UserError(f"policy file {path} does not exist; pass the model.zip of an 'rlgen expert' run")
    algo = _algo_of(path)
    if algo is None:
        raise UserError(f"policy file {path} is not an SB3 model zip (no readable 'data' member)")
    cls = _algorithm_classes()[algo]
    custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    try:
        model = cls.load(path, device=device, custom_objects=custom)
    except Exception as exc:  # BadZipFile, KeyError, RuntimeError from a damaged or foreign file
        raise UserError(f"policy file {path} could not be loaded as an SB3 {cls.__name__} model "
                        f"({type(exc).__name__}); pass the model.zip of an rlgen run") from exc
    if env_id is not None:
        check_policy_fits(model, env_id)
    return model


def check_policy_fits(model: BaseAlgorithm, env_id: str) -> None:
    from rlgen.common.sb3_training import make_env

    env = make_env(env_id)
    obs_space, act_space = env.observation_space, env.action_space
    env.close()
    if model.observation_space.shape != obs_space.shape or type(model.action_space) is not type(act_space) or \
            model.action_space.shape != act_space.shape or \
            getattr(model.action_space, "n", None) != getattr(act_space, "n", None):
        raise UserError(f"the policy observes {model.observation_space} and acts in {model.action_space}, but "
                        f"{env_id} has {obs_space} and {act_space}; pass the policy trained on {env_id}")
