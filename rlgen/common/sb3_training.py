"""Training SB3 algorithms inside an rlgen run directory.

Shared by ``rlgen ppo|trpo|vime|gail``: vectorised envs, the run's logger, periodic atomic checkpoints of the
model *and* of the reward source (VIME's dynamics model, GAIL's discriminator), resume from the last checkpoint,
a progress bar, and a ``summary.json`` with the figures benchmarks read.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv
from tqdm import tqdm

from rlgen.common.checkpoint import CheckpointFolder, atomic_write, atomic_write_json, load_torch
from rlgen.common.errors import UserError
from rlgen.common.interrupts import signals_held
from rlgen.common.logger import make_logger
from rlgen.common.normalization import ObsNormCallback, ReturnScale, RunningObsNormExtractor
from rlgen.common.replay_buffer_io import load_replay_buffer, write_replay_buffer
from rlgen.common.replay_buffer_io import supports as supports_replay_buffer
from rlgen.common.replay_relabel import RelabeledReplayBuffer, ReplayRewardCallback
from rlgen.common.reward_relabel import EnvReward, RewardRelabelCallback, RewardSource
from rlgen.common.run_dir import RunDir

log = logging.getLogger("rlgen")

ALGORITHMS: dict[str, type[OnPolicyAlgorithm]] = {"ppo": PPO, "trpo": TRPO, "a2c": A2C}
# Off-policy algorithms (``rlgen expert``; ``rlgen gail --algo sac``, whose replay samples carry the learned reward:
# rlgen.common.replay_relabel). Their replay buffer goes into each checkpoint (rlgen.common.replay_buffer_io); a
# checkpoint without one (written before it did) resumes with an empty buffer, refilled for ``learning_starts``
# steps before updating.
OFF_POLICY_ALGORITHMS: dict[str, type[OffPolicyAlgorithm]] = {"sac": SAC, "td3": TD3}


# ``algo_kwargs`` of an off-policy algorithm may hold ``action_noise_std``: Gaussian noise of that std on its scaled
# actions in [-1, 1] while it collects (TD3's exploration, the zoo's ``noise_type: normal``; SB3's own default is none).
ACTION_NOISE_KEY = "action_noise_std"

# Constructor arguments that rlgen itself passes (or that a config must not set).
_RESERVED_KWARGS = frozenset({"self", "policy", "env", "seed", "device", "verbose", "policy_kwargs", "tensorboard_log",
                              "_init_setup_model", "replay_buffer_class", "replay_buffer_kwargs",
                              "rollout_buffer_class", "rollout_buffer_kwargs", "action_noise"})


def check_algo_kwargs(algo: str, kwargs: Any) -> None:
    """Reject ``algo_kwargs`` that the SB3 class does not take, or whose value is not of its default's type (a
    number where the default is a number, an integer where it is an integer, a bool where it is a bool), before a
    run directory is made: a typo in a config file is one line, not a traceback from the constructor."""
    import inspect
    import math

    cls = _algorithm_class(algo)
    if not isinstance(kwargs, dict):
        raise UserError(f"algo_kwargs for {algo} must be a mapping of {cls.__name__} options, got {kwargs!r}")
    params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k not in _RESERVED_KWARGS}
    if issubclass(cls, OffPolicyAlgorithm):
        params[ACTION_NOISE_KEY] = inspect.Parameter(ACTION_NOISE_KEY, inspect.Parameter.KEYWORD_ONLY, default=0.0)
        noise = kwargs.get(ACTION_NOISE_KEY, 0.0)
        if isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise < 0:
            raise UserError(f"algo_kwargs for {algo}: {ACTION_NOISE_KEY} must be >= 0, got {noise!r}")
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(f"algo_kwargs for {algo} has unknown option(s) {', '.join(unknown)}; {cls.__name__} takes "
                        f"{', '.join(sorted(params))}")
    for key, value in kwargs.items():
        default = params[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            expected = "true or false"
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
            expected = "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            expected = "a finite number"
        else:
            continue  # None or another type by default: SB3 checks it
        if not ok:
            raise UserError(f"algo_kwargs for {algo}: {key} must be {expected}, got {value!r}; fix the config file")


def _algorithm_class(algo: str) -> type[BaseAlgorithm]:
    cls = ALGORITHMS.get(algo) or OFF_POLICY_ALGORITHMS.get(algo)
    if cls is None:
        raise UserError(f"unknown algo {algo!r}; use one of {', '.join([*ALGORITHMS, *OFF_POLICY_ALGORITHMS])}")
    return cls


def check_policy_kwargs(algo: str, raw: Any) -> None:
    """Reject ``policy_kwargs`` that the SB3 ``MlpPolicy`` of ``algo`` does not take, a ``net_arch`` that is not
    layer sizes, or an activation or extractor that cannot be found, before a run directory is made."""
    import inspect

    if raw is None:
        return
    if not isinstance(raw, dict):
        raise UserError(f"policy_kwargs must be a mapping of policy options (net_arch, activation_fn, ...), got {raw!r}")
    policy = _algorithm_class(algo).policy_aliases["MlpPolicy"]
    params = set(inspect.signature(policy.__init__).parameters) - {"self", "observation_space", "action_space",
                                                                    "lr_schedule"}
    unknown = sorted(set(raw) - params)
    if unknown:
        raise UserError(f"policy_kwargs for {algo} has unknown option(s) {', '.join(unknown)}; {policy.__name__} "
                        f"takes {', '.join(sorted(params))}")

    def sizes(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                               for n in value)

    arch = raw.get("net_arch")
    if arch is not None and not sizes(arch) and not (isinstance(arch, dict) and all(map(sizes, arch.values()))):
        raise UserError(f"policy_kwargs net_arch must be a list of layer sizes ([64, 64]) or one per network "
                        f"({{pi: [64, 64], vf: [64, 64]}}), got {arch!r}; fix the config file")
    policy_kwargs_from_config(raw)  # the activation and extractor named as text


LR_SCHEDULES = ("constant", "linear")


def check_lr_schedule(cfg: dict[str, Any]) -> None:
    """``lr_schedule`` (on-policy algorithms): ``constant``, or ``linear`` from ``learning_rate`` at the first step
    to 0 at ``steps`` (CleanRL's ``anneal_lr``), which settles the policy late in training."""
    schedule = cfg.get("lr_schedule", "constant")
    if schedule not in LR_SCHEDULES:
        raise UserError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {schedule!r}; fix the config file")
    if schedule != "constant" and cfg["algo"] not in ALGORITHMS:
        raise UserError(f"lr_schedule {schedule} needs an on-policy algorithm ({', '.join(ALGORITHMS)}), not "
                        f"{cfg['algo']}; set lr_schedule: constant")


def _algo_kwargs(algo_cls: type[BaseAlgorithm], cfg: dict[str, Any], action_space: gym.Space) -> dict[str, Any]:
    """``algo_kwargs`` with ``lr_schedule`` applied and ``action_noise_std`` made SB3's action noise. SB3 calls the
    schedule with the share of ``total_timesteps`` still to go, which a resumed run (``reset_num_timesteps=False``)
    computes over the whole run as well."""
    import inspect

    kwargs = dict(cfg.get("algo_kwargs", {}))
    noise_std = float(kwargs.pop(ACTION_NOISE_KEY, 0.0))
    if noise_std > 0:
        dim = int(np.prod(action_space.shape))
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), np.full(dim, noise_std))
    if cfg.get("lr_schedule", "constant") == "linear":
        start = kwargs.get("learning_rate", inspect.signature(algo_cls.__init__).parameters["learning_rate"].default)
        kwargs["learning_rate"] = LinearSchedule(float(start), 0.0, 1.0)
    return kwargs


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` that also works in subprocesses: importing this module imports rlgen, which registers
    the ``rlgen/...`` envs."""
    return gym.make(env_id, **kwargs)


def make_vec_env_for(env_id: str, n_envs: int, seed: int, subprocess: bool = False,
                     episode_info: Sequence[str] = ()) -> VecEnv:
    """``n_envs`` copies of ``env_id`` with SB3's Monitor (so ``rollout/ep_rew_mean`` is the env's own return);
    the Monitor also keeps the ``episode_info`` keys of each episode's last ``info``."""
    cls = SubprocVecEnv if subprocess and n_envs > 1 else DummyVecEnv
    return make_vec_env(functools.partial(make_env, env_id), n_envs=n_envs, seed=seed, vec_env_cls=cls,
                        monitor_kwargs={"info_keywords": tuple(episode_info)})


class ExtrinsicRewardTracker(BaseCallback):
    """Remembers when the env's own reward was first positive, and the best episode return seen."""

    def __init__(self) -> None:
        super().__init__()
        self.first_reward_step: int | None = None
        self.best_episode_return = -np.inf
        self.episodes = 0

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"])
        if self.first_reward_step is None and np.any(rewards > 0):
            self.first_reward_step = int(self.num_timesteps)
        for info in self.locals["infos"]:
            episode = info.get("episode")
            if episode is not None:
                self.episodes += 1
                self.best_episode_return = max(self.best_episode_return, float(episode["r"]))
        return True

    def state(self) -> dict[str, Any]:
        return {"first_reward_step": -1 if self.first_reward_step is None else self.first_reward_step,
                "best_episode_return": float(self.best_episode_return), "episodes": self.episodes}

    def load(self, state: dict[str, Any]) -> None:
        step = int(state.get("first_reward_step", -1))
        self.first_reward_step = None if step < 0 else step
        self.best_episode_return = float(state.get("best_episode_return", -np.inf))
        self.episodes = int(state.get("episodes", 0))


class EpisodeInfoLogger(BaseCallback):
    """Logs ``rollout/ep_<key>_mean``: the mean over the last 100 episodes of ``info[key]`` at each episode's end
    (e.g. SparseHalfCheetah's ``torso_com_x``: how far, and which way, the policy runs)."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__()
        self.keys = tuple(keys)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        for key in self.keys:
            values = [float(ep[key]) for ep in self.model.ep_info_buffer if key in ep]
            if values:
                self.logger.record(f"rollout/ep_{key}_mean", float(np.mean(values)))


# A checkpoint at least this often whatever ``checkpoint_every`` says: a slow run (Humanoid's SAC expert: ~30 env
# steps/s on one core, so 100k steps take an hour) loses at most this much to an interruption.
CHECKPOINT_MAX_INTERVAL_S = 600.0


class ProgressAndCheckpoint(BaseCallback):
    """A progress bar over env steps, and an atomic checkpoint every ``every`` env steps (0: none) and at least every
    ``max_interval_s`` seconds of wall clock.

    A checkpoint is taken at the start of a rollout, after the policy update on the previous one: then the
    policy, the reward source (fitted on that rollout in ``on_rollout_end``) and the observation statistics all
    have seen the same rollouts, and a resumed run neither fits its reward source on a rollout twice nor loses
    an update.
    """

    def __init__(self, save: Callable[[], None], every: int, total: int, start: int,
                 max_interval_s: float = CHECKPOINT_MAX_INTERVAL_S):
        super().__init__()
        self.save, self.every, self.total, self.start = save, every, total, start
        self.max_interval_s = max_interval_s
        self._last_save, self._last_save_time = start, time.monotonic()
        self.rollout_start = start  # the step the rollout being collected started at
        self.collecting = False
        self._bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self._bar = tqdm(total=self.total, initial=self.start, unit="step", dynamic_ncols=True, disable=None,
                         desc="training")

    def _on_step(self) -> bool:
        if self._bar is not None:
            self._bar.update(self.model.n_envs)
        return True

    def _on_rollout_start(self) -> None:
        self.rollout_start, self.collecting = self.num_timesteps, True
        due = self.every > 0 and self.num_timesteps - self._last_save >= self.every
        overdue = time.monotonic() - self._last_save_time >= self.max_interval_s
        if (due or overdue) and self.num_timesteps > self._last_save:
            self.save()
            self._last_save, self._last_save_time = self.num_timesteps, time.monotonic()

    def _on_rollout_end(self) -> None:
        self.collecting = False

    def _on_training_end(self) -> None:
        if self._bar is not None:
            self._bar.close()


def train_sb3(run: RunDir, make_reward_source: Callable[[BaseAlgorithm], RewardSource] | None = None,
              device: str = "cpu", report: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train (or resume) the SB3 run described by ``run.config``; return and save its summary.

    ``make_reward_source(model)`` builds the learned reward (VIME, GAIL) that relabels each rollout (on-policy), or
    each replay minibatch (off-policy: :mod:`rlgen.common.replay_relabel`, GAIL only);
    ``report(summary)`` returns the command's own figures (e.g. the normalised return), added to the summary
    before ``summary.json`` is written.

    Config keys used: ``env`` (gymnasium id), ``algo`` (ppo|trpo|a2c|sac|td3),
    ``seed``, ``steps``, ``n_envs``, ``subprocess_envs``, ``algo_kwargs``, ``lr_schedule`` (see
    :func:`check_lr_schedule`), ``policy_kwargs``, ``obs_norm`` (the
    policy standardises observations with running statistics, on-policy only), ``reward_norm`` (rewards divided by
    the running std of the discounted return, on-policy only), ``episode_info`` (keys of the env's ``info`` logged
    at episode ends), ``checkpoint_every``, ``eval_episodes``, ``eval_every`` (see :func:`periodic_evaluation`), ``stop_return`` and
    ``stop_check_every`` (see :func:`stop_at_return`).
    """
    cfg = run.config
    algo_cls = ALGORITHMS.get(cfg["algo"]) or OFF_POLICY_ALGORITHMS.get(cfg["algo"])
    if algo_cls is None:
        raise UserError(f"unknown algo {cfg['algo']!r}; use one of {', '.join([*ALGORITHMS, *OFF_POLICY_ALGORITHMS])}")
    for key in ("obs_norm", "reward_norm"):
        if cfg.get(key) and cfg["algo"] not in ALGORITHMS:
            raise UserError(f"{key} needs an on-policy algorithm ({', '.join(ALGORITHMS)}), not {cfg['algo']}")
    if cfg.get("obs_norm") and (cfg.get("policy_kwargs") or {}).get("features_extractor_class"):
        raise UserError("obs_norm sets the policy's features extractor; drop features_extractor_class from "
                        "policy_kwargs or set obs_norm: false")
    episode_info = tuple(cfg.get("episode_info") or ())
    venv = make_vec_env_for(cfg["env"], cfg["n_envs"], cfg["seed"], cfg.get("subprocess_envs", False), episode_info)
    ckpt_dir = run.checkpoints
    checkpoints = CheckpointFolder(ckpt_dir, ("model_*.zip", "extras_*.pt", "replay_*.npz"))
    tracker = ExtrinsicRewardTracker()
    resume_step: int | None = None
    elapsed_before = 0.0

    extras: dict[str, Any] | None = None
    latest = checkpoints.latest() if run.resumed else None
    if latest is not None:
        model = _load_model(algo_cls, ckpt_dir / latest["model"], venv, device)
        extras = load_torch(ckpt_dir / latest["extras"])
        tracker.load(extras["tracker"])
        elapsed_before = float(extras["elapsed"])
        resume_step = int(model.num_timesteps)
        if isinstance(model, OffPolicyAlgorithm):
            if latest.get("replay") and (ckpt_dir / latest["replay"]).is_file():
                load_replay_buffer(model.replay_buffer, ckpt_dir / latest["replay"])
            else:  # empty replay buffer: collect before updating again
                if latest.get("replay"):
                    log.warning("replay buffer %s is missing: resuming with an empty one", latest["replay"])
                model.learning_starts = resume_step + int(cfg.get("algo_kwargs", {}).get("learning_starts", 100))
        if resume_step >= cfg["steps"]:
            log.info("%s has trained its %d steps already (--steps %d); pass a larger --steps to extend it",
                     run.path, resume_step, cfg["steps"])
        else:
            log.info("resuming %s from step %d", run.path, resume_step)
    else:
        policy_kwargs = policy_kwargs_from_config(cfg.get("policy_kwargs"))
        if cfg.get("obs_norm"):
            policy_kwargs = {**(policy_kwargs or {}), "features_extractor_class": RunningObsNormExtractor}
        kwargs = _algo_kwargs(algo_cls, cfg, venv.action_space)
        if make_reward_source is not None and issubclass(algo_cls, OffPolicyAlgorithm):
            kwargs["replay_buffer_class"] = RelabeledReplayBuffer  # samples carry the learned reward
        model = algo_cls("MlpPolicy", venv, seed=cfg["seed"], device=device, verbose=0, policy_kwargs=policy_kwargs,
                         **kwargs)
    if isinstance(model, OnPolicyAlgorithm) and int(cfg["steps"]) % (model.n_steps * model.n_envs):
        rollout = model.n_steps * model.n_envs  # SB3 collects whole rollouts, so the budget ends on one
        log.info("training runs in rollouts of %d steps (n_steps x n_envs): --steps %d ends after %d", rollout,
                 int(cfg["steps"]), -(-int(cfg["steps"]) // rollout) * rollout)
    reward_source = make_reward_source(model) if make_reward_source is not None else None
    if reward_source is not None and extras is not None:
        reward_source.load_state_dict(extras["reward_source"])
    return_scale = ReturnScale(model.gamma, model.n_envs) if cfg.get("reward_norm") else None
    if return_scale is not None and extras is not None and extras.get("return_scale"):
        return_scale.load_state_dict(extras["return_scale"])
    console = ("rollout/ep_rew_mean", *(reward_source.console_keys if reward_source else ()))
    model.set_logger(make_logger(run.path, console, resume_step))
    stopper = stop_at_return(cfg, model.n_envs)
    if stopper is not None and extras is not None and extras.get("stop_check_best") is not None:
        stopper.best_mean_reward = float(extras["stop_check_best"])

    start_time = time.time()

    def save_checkpoint() -> None:
        step = int(model.num_timesteps)
        extras = {"reward_source": reward_source.state_dict() if reward_source else {},
                  "return_scale": return_scale.state_dict() if return_scale else {},
                  "tracker": tracker.state(), "elapsed": elapsed_before + time.time() - start_time,
                  "stop_check_best": None if stopper is None else _finite_or_none(stopper.best_mean_reward)}
        files = {"model": (f"model_{step}.zip", lambda tmp: model.save(tmp)),
                 "extras": (f"extras_{step}.pt", lambda tmp: torch.save(extras, tmp))}
        if isinstance(model, OffPolicyAlgorithm) and supports_replay_buffer(model.replay_buffer):
            files["replay"] = (f"replay_{step}.npz", lambda tmp: write_replay_buffer(model.replay_buffer, tmp))
        checkpoints.save(files, step=step)

    total = int(cfg["steps"])
    remaining = total - int(model.num_timesteps)
    callbacks: list[BaseCallback] = [tracker]
    if episode_info:
        callbacks.append(EpisodeInfoLogger(episode_info))
    if cfg["algo"] in ALGORITHMS:  # updates any RunningObsNormExtractor of the policy (obs_norm, or policy_kwargs)
        callbacks.append(ObsNormCallback())
    if isinstance(model, OffPolicyAlgorithm) and reward_source is not None:
        callbacks.append(ReplayRewardCallback(reward_source))
    elif reward_source is not None or return_scale is not None:
        callbacks.append(RewardRelabelCallback(reward_source or EnvReward(), return_scale))
    progress = ProgressAndCheckpoint(save_checkpoint, int(cfg.get("checkpoint_every", 0)), total,
                                     int(model.num_timesteps))
    callbacks.append(progress)
    if stopper is not None:
        callbacks.append(stopper)
    evaluator = periodic_evaluation(cfg, model.n_envs)
    if evaluator is not None:
        callbacks.append(evaluator)
    if remaining > 0 and not _reached_stop_return(stopper, cfg):  # (a resumed run may have stopped already)
        try:
            model.learn(total_timesteps=remaining, callback=CallbackList(callbacks),
                        reset_num_timesteps=resume_step is None)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: resume from here, not from the last periodic checkpoint
            # A rollout being collected is all that is lost: the checkpoint counts the steps up to its start, so
            # that the resumed run's rollouts line up with an uninterrupted run's and end at `steps`, not past it.
            if progress.collecting:
                model.num_timesteps = progress.rollout_start
            with signals_held():   # a second signal must not cut this checkpoint short
                save_checkpoint()
            raise
        if _reached_stop_return(stopper, cfg) and model.num_timesteps < total:
            log.info("deterministic return %.1f reached stop_return %s at step %d: training stops",
                     stopper.best_mean_reward, cfg["stop_return"], model.num_timesteps)
        save_checkpoint()
    wall = elapsed_before + time.time() - start_time
    for callback in (stopper, evaluator):
        if callback is not None:
            callback.eval_env.close()

    atomic_write(run.path / "model.zip", lambda tmp: model.save(tmp))
    summary = _summarise(model, cfg, tracker, wall)
    if stopper is not None:
        summary.update(stop_return=float(cfg["stop_return"]), stopped_early=bool(model.num_timesteps < total),
                       stop_check_best_return=_finite_or_none(stopper.best_mean_reward))
    if report is not None:
        summary.update(report(summary))
    atomic_write_json(run.path / "summary.json", summary)
    venv.close()
    return summary


STOP_CHECK_SEED_OFFSET = 20_000  # the stopping checks' episodes are not the summary's (seed + 10_000)


def stop_at_return(cfg: dict[str, Any], n_envs: int) -> EvalCallback | None:
    """SB3's ``EvalCallback`` with ``StopTrainingOnRewardThreshold`` when the config sets ``stop_return``: every
    ``stop_check_every`` env steps, ``eval_episodes`` deterministic episodes on an env of its own; training stops
    once their mean return reaches ``stop_return``. (An expert much stronger than the one a study needs costs hours
    of CPU, and an imitator given a fixed budget cannot match it.) The summary's evaluation uses other episodes,
    so its figure is not the one that stopped training."""
    if cfg.get("stop_return") is None:
        return None
    every = stop_check_interval(cfg)
    eval_env = make_vec_env_for(cfg["env"], 1, cfg["seed"] + STOP_CHECK_SEED_OFFSET)
    return EvalCallback(eval_env, callback_on_new_best=StopTrainingOnRewardThreshold(float(cfg["stop_return"])),
                        n_eval_episodes=int(cfg.get("eval_episodes", 5)), eval_freq=max(every // n_envs, 1),
                        deterministic=True, verbose=0)


def periodic_evaluation(cfg: dict[str, Any], n_envs: int) -> EvalCallback | None:
    """With ``eval_every`` (env steps, 0: off): ``eval_episodes`` deterministic episodes every ``eval_every`` steps on
    the summary's evaluation env, logged as ``eval/mean_reward`` in progress.csv -- the learning curve as the final
    evaluation scores it (the training return is the stochastic policy's, on a changing reward)."""
    every = int(cfg.get("eval_every") or 0)
    if every <= 0:
        return None
    eval_env = make_vec_env_for(cfg["env"], 1, cfg["seed"] + 10_000)
    return EvalCallback(eval_env, n_eval_episodes=int(cfg.get("eval_episodes", 5)), eval_freq=max(every // n_envs, 1),
                        deterministic=True, verbose=0)


def stop_check_interval(cfg: dict[str, Any]) -> int:
    """The config's ``stop_check_every``, or a :class:`UserError` unless it is a positive number of env steps (the
    CLI calls this before it makes a run directory)."""
    every = cfg.get("stop_check_every")
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise UserError(f"stop_check_every must be a positive number of env steps, got {every!r}")
    return every


def _finite_or_none(value: float) -> float | None:
    """EvalCallback's best return is -inf before its first check; JSON has no infinity."""
    return float(value) if np.isfinite(value) else None


def _reached_stop_return(stopper: EvalCallback | None, cfg: dict[str, Any]) -> bool:
    return stopper is not None and stopper.best_mean_reward >= float(cfg["stop_return"])


def _load_model(algo_cls: type[OnPolicyAlgorithm], path: Path, venv: VecEnv, device: str) -> BaseAlgorithm:
    try:
        return algo_cls.load(path, env=venv, device=device)
    except FileNotFoundError as exc:
        raise UserError(f"checkpoint {path} is missing; resume from another run or start a new one") from exc
    except Exception as exc:  # zipfile.BadZipFile, KeyError, ... for a damaged file
        raise UserError(f"checkpoint {path} is corrupt ({type(exc).__name__}); start a new run") from exc


def policy_kwargs_from_config(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """Config files name activation functions as strings (``tanh``); SB3 wants the torch class."""
    if not raw:
        return None
    from torch import nn

    kwargs = dict(raw)
    if isinstance(kwargs.get("activation_fn"), str):
        name = kwargs["activation_fn"].lower()
        table = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
        if name not in table:
            raise UserError(f"unknown activation_fn {name!r} in policy_kwargs; use one of {', '.join(table)}")
        kwargs["activation_fn"] = table[name]
    if isinstance(kwargs.get("features_extractor_class"), str):  # "package.module:ClassName"
        kwargs["features_extractor_class"] = _import_object(kwargs["features_extractor_class"])
    return kwargs


def _import_object(path: str) -> Any:
    import importlib

    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise UserError(f"cannot import {path!r} named in policy_kwargs; write it as 'package.module:Name'") from exc


def _summarise(model: BaseAlgorithm, cfg: dict[str, Any], tracker: ExtrinsicRewardTracker, wall: float) -> dict[str, Any]:
    eval_episodes = int(cfg.get("eval_episodes", 5))
    eval_mean = eval_std = None
    if eval_episodes > 0:
        eval_env = make_vec_env_for(cfg["env"], 1, cfg["seed"] + 10_000)
        returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=eval_episodes, deterministic=True,
                                     return_episode_rewards=True)
        eval_env.close()
        eval_mean, eval_std = float(np.mean(returns)), float(np.std(returns))
    ep_returns = [float(ep["r"]) for ep in model.ep_info_buffer]
    steps = int(model.num_timesteps)
    return {
        "env": cfg["env"], "algo": cfg["algo"], "seed": cfg["seed"], "steps": steps, "device": str(model.device),
        "wall_clock_s": round(wall, 2), "env_steps_per_s": round(steps / wall, 1) if wall > 0 else None,
        "train_return_mean_last_100": float(np.mean(ep_returns)) if ep_returns else None,
        "best_episode_return": tracker.state()["best_episode_return"] if tracker.episodes else None,
        "reached_reward": tracker.first_reward_step is not None,
        "first_reward_step": tracker.first_reward_step,
        "eval_return_mean": eval_mean, "eval_return_std": eval_std, "eval_episodes": eval_episodes,
    }
