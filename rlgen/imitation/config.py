"""The options of ``rlgen expert|rollouts|gail|bc`` and their resolution into the run configuration that
:mod:`rlgen.imitation.pipeline` runs.

A full pipeline on CartPole::

    python -m rlgen.run expert --env CartPole-v1
    python -m rlgen.run rollouts --policy runs/expert-CartPole-v1-s0-<time> --env CartPole-v1 --episodes 10 \\
        --out demos.npz
    python -m rlgen.run gail --env CartPole-v1 --demos demos.npz --trajectories 4
    python -m rlgen.run bc --env CartPole-v1 --demos demos.npz --trajectories 4

The defaults are in ``rlgen/configs/imitation.yaml`` (one section per command, with per-env entries and GAIL's
presets), over the keyword defaults of the classes whose arguments they are (GAIL's, VIME's, BehaviorCloning's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rlgen.common.errors import UserError
from rlgen.common.options import Flag
from rlgen.common.resolve import resolve_config, resume_request, run_flags

WHERE = "rlgen/configs/imitation.yaml"
EXPERT_ALGOS = ("ppo", "trpo", "a2c", "sac", "td3")
ENV = Flag("env", "gymnasium id (CartPole-v1, Pendulum-v1, Hopper-v5, HalfCheetah-v5, Walker2d-v5, Ant-v5, ...)")
DEMOS = [
    Flag("demos", "demonstrations npz (from 'rlgen rollouts', or the imitation library's npz)", metavar="FILE"),
    Flag("trajectories", "use the first N trajectories of the demos (default all)", kind=int, minimum=1, metavar="N"),
    Flag("subsample", "keep every K-th (s, a) pair of each trajectory from a random offset", kind=int, minimum=1,
         metavar="K"),
    Flag("expert_return", "expert return for the normalised return (default: the mean return of all the demos' "
         "episodes, also those --trajectories leaves out)", kind=float)]

FLAGS: dict[str, list[Flag]] = {
    "expert": [ENV, Flag("algo", "SB3 algorithm", choices=EXPERT_ALGOS),
               Flag("n_envs", "envs stepped together", kind=int, minimum=1),
               Flag("stop_return", "stop training once the deterministic return reaches R, checked every "
                    "stop_check_every steps", kind=float, metavar="R")],
    "rollouts": [ENV, Flag("policy", "the policy to record: a model zip or an rlgen expert/gail/bc run directory",
                           metavar="PATH"),
                 Flag("episodes", "whole episodes to record", kind=int, minimum=1),
                 Flag("deterministic", "sample the policy's actions (default: its deterministic actions)", kind=bool,
                      flag="--stochastic", const=False)],
    "gail": [ENV, *DEMOS,
             Flag("preset", "rlgen: a PPO generator and a discriminator trained on minibatches of all expert pairs; "
                  "paper: the paper's TRPO settings; sac: an off-policy SAC generator whose replay samples the "
                  "current discriminator rewards; dac: that with TD3 and absorbing states (Discriminator-Actor-Critic)",
                  choices=("rlgen", "paper", "sac", "dac")),
             Flag("algo", "policy optimiser", choices=("ppo", "trpo", "sac", "td3")),
             Flag("n_envs", "envs stepped together", kind=int, minimum=1),
             Flag("eval_every", "env steps between deterministic evaluations logged to progress.csv "
                  "(eval/mean_reward; 0: only the final one)", kind=int, minimum=0, metavar="N"),
             Flag("expert_replay", "share of every replay minibatch drawn from the demos' transitions, rewarded "
                  "by D as the policy's are (--algo sac|td3; 0: none)", kind=float, minimum=0, metavar="SHARE"),
             Flag("discriminator.reward", "-log(1 - D) (episodes end on failure), log D (episodes end on success) or "
                  "log D - log(1 - D) (with --absorbing)", choices=("neg_log_1_minus_d", "log_d", "logit")),
             Flag("discriminator.absorbing", "D also scores the absorbing state that terminated episodes enter, "
                  "and terminal transitions carry its value (DAC's; --algo sac or td3)", kind=bool, const=True,
                  flag="--absorbing"),
             Flag("discriminator.obs_features", "the discriminator sees only the first N observation features "
                  "(Humanoid: 45, its joint positions and velocities; default all)", kind=int, minimum=1, metavar="N",
                  flag="--obs-features"),
             Flag("discriminator.policy_entropy_weight", "the paper's causal-entropy bonus lambda", kind=float,
                  minimum=0),
             Flag("discriminator.gradient_penalty", "weight of a gradient penalty on the discriminator at points "
                  "between policy and expert pairs (0: none)", kind=float, minimum=0),
             Flag("vime.eta", "add ETA times VIME's exploration bonus (the normalised information gain) to GAIL's "
                  "reward; 0 is off", kind=float, minimum=0, metavar="ETA", flag="--vime-eta")],
    "bc": [ENV, *DEMOS, Flag("batch_size", "expert pairs per gradient step", kind=int, minimum=1)],
}
RUN_FLAGS = {"expert": run_flags("steps"), "gail": run_flags("steps"), "bc": run_flags("epochs"),
             "rollouts": run_flags("steps", steps="also record until at least this many transitions (whole episodes)",
                                   out="demos file to write (PATH.npz; its run record goes under runs/), or the parent "
                                       "directory of the run directory, which then holds demos.npz")}


def flag_groups(command: str) -> list[tuple[str | None, list[Flag]]]:
    return [(None, FLAGS[command]), ("run options", RUN_FLAGS[command])]


def declared(command: str) -> list[Flag]:
    """Every option of ``command``."""
    return [*FLAGS[command], *RUN_FLAGS[command]]


def packaged_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The defaults that --help quotes (with the default preset's), the command's section and its file."""
    from rlgen.common.config import deep_merge

    defaults, section = section_defaults(command)
    if "presets" in section:
        defaults = deep_merge(defaults, section["presets"][defaults["preset"]])
    return defaults, section, WHERE


def section_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The command's defaults (its section of imitation.yaml over GAIL's/VIME's/BehaviorCloning's own) and the
    section (with the per-env entries and presets)."""
    from rlgen.common.config import keyword_defaults, packaged_config

    section = packaged_config("imitation.yaml")[command]
    defaults = section["defaults"]
    if command == "gail":
        from rlgen.agents.reward_sources import discriminator_defaults, vime_defaults

        defaults = {**defaults, "discriminator": {**discriminator_defaults(), **defaults["discriminator"]},
                    "vime": {**vime_defaults(), **defaults["vime"]}}
    if command == "bc":
        from rlgen.agents.bc import BehaviorCloning

        defaults = {**keyword_defaults(BehaviorCloning, exclude=("seed",)), **defaults}
    return defaults, section


def resolve(command: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The run configuration of ``rlgen <command>`` with ``flags``: the command's section of imitation.yaml, the
    preset, its env entry, --config, flags; every value checked before a run directory is made."""
    from rlgen.envs import resolve_env_id

    defaults, section = section_defaults(command)
    cfg = resolve_config(flags, dict(defaults, command=command), declared(command), section.get("tasks", {}),
                         presets=section.get("presets"), canonical=resolve_env_id)
    cfg["env_name"] = cfg["env"]
    cfg["env"] = resolve_env_id(cfg["env"])
    if "algo_kwargs" in cfg:
        from rlgen.common.sb3_training import check_algo_kwargs, check_lr_schedule

        cfg["algo_kwargs"] = dict(cfg["algo_kwargs"].get(cfg["algo"], {}) or {})
        check_algo_kwargs(cfg["algo"], cfg["algo_kwargs"])
        check_lr_schedule(cfg)
    if command == "expert":
        _resolve_expert(cfg)
    if "policy_kwargs" in cfg:  # (BC's policy is PPO's)
        from rlgen.common.sb3_training import check_policy_kwargs

        check_policy_kwargs(cfg.get("algo", "ppo"), cfg["policy_kwargs"])
    resumed = flags.get("resume") not in (None, "latest")
    for key in ("demos", "policy"):  # `--resume RUN_DIR` alone: the run's own inputs
        if key in cfg and not cfg[key] and resumed:
            from rlgen.common.run_dir import saved_run_config

            cfg[key] = saved_run_config(Path(flags["resume"])).get(key)
    if "eval_episodes" in cfg and (not isinstance(cfg["eval_episodes"], int) or cfg["eval_episodes"] < 1):
        raise UserError(f"eval_episodes must be a positive integer, got {cfg['eval_episodes']!r}")
    if command in ("gail", "bc"):
        _check_imitation(command, cfg)
    return cfg


def _resolve_expert(cfg: dict[str, Any]) -> None:
    """An expert's policy_kwargs (a config may key them by algorithm); SAC/TD3 only on continuous actions; the stop
    check's interval."""
    kwargs = cfg.get("policy_kwargs") or {}
    keyed = bool(kwargs) and set(kwargs) <= set(EXPERT_ALGOS)
    cfg["policy_kwargs"] = dict(kwargs.get(cfg["algo"], {}) or {}) if keyed else dict(kwargs)
    if cfg["algo"] in ("sac", "td3"):
        _check_box_actions(cfg)
    if cfg.get("stop_return") is not None:
        from rlgen.common.sb3_training import stop_check_interval

        stop_check_interval(cfg)


def _check_imitation(command: str, cfg: dict[str, Any]) -> None:
    """GAIL's and BC's own sections and keys; the demos file made absolute (a resumed run finds it anywhere)."""
    allowed = (True, False, "running") if command == "gail" else (True, False)  # (BC has no rollouts)
    if cfg["policy_obs_norm"] not in allowed:
        raise UserError(f"policy_obs_norm must be one of {', '.join(map(str, allowed))} for {command}, got "
                        f"{cfg['policy_obs_norm']!r}")
    if command == "gail":
        from rlgen.agents.reward_sources import check_discriminator_options, check_vime_options, discriminator_defaults

        check_discriminator_options(cfg["discriminator"], discriminator_defaults())
        check_vime_options(cfg["vime"])
        if not 0 <= cfg["expert_replay"] < 1:
            raise UserError(f"expert_replay is a share of each minibatch, in [0, 1); got {cfg['expert_replay']}")
        if cfg["algo"] in ("sac", "td3"):
            _check_off_policy_gail(cfg)
        elif cfg["expert_replay"]:
            raise UserError(f"--expert-replay needs an off-policy generator (--algo sac or td3), not {cfg['algo']}")
        _check_obs_features(cfg)
        if cfg["discriminator"]["absorbing"] and cfg["algo"] not in ("sac", "td3"):
            raise UserError(f"--absorbing needs --algo sac or td3: terminal replay transitions carry the absorbing "
                            f"state's value, which {cfg['algo']}'s rollouts cannot take")
    elif not (isinstance(cfg["val_fraction"], (int, float)) and 0 <= cfg["val_fraction"] < 1):
        raise UserError(f"val_fraction must be in [0, 1), got {cfg['val_fraction']!r}; fix it in the config file")
    if not cfg.get("demos"):
        raise UserError("no --demos given; record demonstrations with 'rlgen rollouts' and pass the npz file")
    cfg["demos"] = str(Path(cfg["demos"]).expanduser().resolve())


def _check_obs_features(cfg: dict[str, Any]) -> None:
    """discriminator.obs_features: a positive integer, at most the env's observation size (or None: all)."""
    features = cfg["discriminator"]["obs_features"]
    if features is None:
        return
    if not (isinstance(features, int) and not isinstance(features, bool) and features > 0):
        raise UserError(f"discriminator obs_features must be a positive integer or null (all), got {features!r}")
    import numpy as np

    from rlgen.imitation.pipeline import env_spaces

    size = int(np.prod(env_spaces(cfg["env"])[0].shape))
    if features > size:
        raise UserError(f"discriminator obs_features {features} exceeds {cfg['env']}'s {size} observation features; "
                        f"set it to at most {size} (or null for all)")


def _check_off_policy_gail(cfg: dict[str, Any]) -> None:
    """What an off-policy generator cannot do: its replay samples are rewarded one minibatch at a time
    (rlgen.common.replay_relabel), so there is no rollout to scale returns over, nor for VIME to fit."""
    problems = {"policy_obs_norm": cfg["policy_obs_norm"] == "running", "reward_norm": bool(cfg["reward_norm"]),
                "--vime-eta": bool(cfg["vime"].get("eta")),
                "discriminator.policy_entropy_weight": bool(cfg["discriminator"]["policy_entropy_weight"])}
    wrong = [name for name, bad in problems.items() if bad]
    if wrong:
        raise UserError(f"--algo {cfg['algo']} cannot use {', '.join(wrong)} (on-policy only); set them off or use "
                        "--algo ppo")
    _check_box_actions(cfg)


def _check_box_actions(cfg: dict[str, Any]) -> None:
    """SAC and TD3 act in continuous (Box) action spaces only."""
    from gymnasium import spaces

    from rlgen.imitation.pipeline import env_spaces

    if not isinstance(env_spaces(cfg["env"])[1], spaces.Box):
        raise UserError(f"--algo {cfg['algo']} needs continuous (Box) actions; {cfg['env']} has discrete actions: "
                        "use --algo ppo")


def run(command: str, flags: Mapping[str, Any]) -> None:
    """``rlgen <command>`` with ``flags`` (the options the user gave, by key)."""
    from rlgen.imitation import pipeline

    entry = {"expert": pipeline.train_expert, "rollouts": pipeline.record_rollouts, "gail": pipeline.train_gail,
             "bc": pipeline.train_bc}[command]
    entry(resolve(command, flags), resume_request(flags, declared(command)))
