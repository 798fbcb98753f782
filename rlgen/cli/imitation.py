"""``rlgen expert|rollouts|gail|bc``: the flags of the imitation pipeline (:mod:`rlgen.imitation.pipeline`), resolved
into a run configuration.

A full pipeline on CartPole::

    python -m rlgen.run expert --env CartPole-v1
    python -m rlgen.run rollouts --policy runs/expert-CartPole-v1-s0-<time> --env CartPole-v1 --episodes 10 \\
        --out demos.npz
    python -m rlgen.run gail --env CartPole-v1 --demos demos.npz --trajectories 4
    python -m rlgen.run bc --env CartPole-v1 --demos demos.npz --trajectories 4

Every command writes a run directory (config.json, summary.json, ...) and prints where results went. Defaults
come from ``rlgen/configs/imitation.yaml`` (one section per command, with per-env entries).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlgen.cli.options import (
    S,
    add_common_options,
    finite_float,
    nonnegative_float,
    positive_int,
    resolve_config,
    resume_request,
)

ENV_HELP = "gymnasium id (CartPole-v1, Pendulum-v1, Hopper-v5, HalfCheetah-v5, Walker2d-v5, Ant-v5, ...)"
EXPERT_ALGOS = ("ppo", "trpo", "a2c", "sac", "td3")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=S, help=ENV_HELP)
    if command == "expert":
        parser.add_argument("--algo", choices=EXPERT_ALGOS, default=S,
                            help="SB3 algorithm (default per env: ppo on CartPole, sac on Pendulum and MuJoCo)")
        parser.add_argument("--n-envs", dest="n_envs", type=positive_int, default=S, help="envs stepped together")
        parser.add_argument("--stop-return", dest="stop_return", type=finite_float, default=S, metavar="R",
                            help="stop training once the deterministic return reaches R, checked every "
                                 "stop_check_every steps (default per env: 4500 on HalfCheetah-v5, 3500 on "
                                 "Walker2d-v5 and Ant-v5, else off)")
        add_common_options(parser, budget="steps")
    elif command == "rollouts":
        parser.add_argument("--policy", default=S, metavar="PATH",
                            help="the policy to record: a model zip or an rlgen expert/gail/bc run directory")
        parser.add_argument("--episodes", type=positive_int, default=S, help="whole episodes to record")
        parser.add_argument("--stochastic", dest="deterministic", action="store_const", const=False, default=S,
                            help="sample the policy's actions (default: its deterministic actions)")
        add_common_options(parser, budget="steps")
        _set_help(parser, "--steps", "also record until at least this many transitions (whole episodes)")
        _set_help(parser, "--out", "demos file to write (PATH.npz; its run record goes under runs/), or the parent "
                                   "directory of the run directory, which then holds demos.npz (default runs)")
    else:  # gail, bc
        parser.add_argument("--demos", default=S, metavar="FILE",
                            help="demonstrations npz (from 'rlgen rollouts', or the imitation library's npz)")
        parser.add_argument("--trajectories", type=positive_int, default=S, metavar="N",
                            help="use the first N trajectories of the demos (default all)")
        parser.add_argument("--subsample", type=positive_int, default=S, metavar="K",
                            help="keep every K-th (s, a) pair of each trajectory from a random offset "
                                 "(default 20 on MuJoCo, as in the paper; 1 with GAIL's rlgen preset)")
        parser.add_argument("--expert-return", dest="expert_return", type=finite_float, default=S,
                            help="expert return for the normalised return (default: the mean return of all the demos' "
                                 "episodes, also those --trajectories leaves out)")
        if command == "gail":
            parser.add_argument("--preset", choices=("rlgen", "paper"), default=S,
                                help="rlgen: a PPO generator and a discriminator trained on minibatches of all expert "
                                     "pairs (the default on MuJoCo); paper: the paper's TRPO settings (the default "
                                     "on classic control); see rlgen/configs/imitation.yaml")
            parser.add_argument("--algo", choices=("ppo", "trpo"), default=S,
                                help="policy optimiser (default: ppo with the rlgen preset, trpo with paper)")
            parser.add_argument("--n-envs", dest="n_envs", type=positive_int, default=S,
                                help="envs stepped together (default: 8 with the rlgen preset, 10 with paper)")
            parser.add_argument("--reward", choices=("neg_log_1_minus_d", "log_d"), default=S,
                                help="-log(1 - D) (default; episodes end on failure) or log D (episodes end on "
                                     "success)")
            parser.add_argument("--policy-entropy-weight", dest="policy_entropy_weight", type=nonnegative_float,
                                default=S, help="the paper's causal-entropy bonus lambda (default 0)")
            parser.add_argument("--vime-eta", dest="vime_eta", type=nonnegative_float, default=S, metavar="ETA",
                                help="add VIME's exploration bonus, ETA times the normalised information gain, to "
                                     "GAIL's reward (default 0: off)")
            add_common_options(parser, budget="steps")
        else:
            parser.add_argument("--batch-size", dest="batch_size", type=positive_int, default=S,
                                help="expert pairs per gradient step")
            add_common_options(parser, budget="epochs")


def section_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The command's section of imitation.yaml and its ``defaults``, over the defaults of the classes whose
    arguments they are (GAIL's under ``discriminator``, VIME's under ``vime``, BehaviorCloning's)."""
    from rlgen.common.config import keyword_defaults, packaged_config

    section = packaged_config("imitation.yaml")[command]
    defaults = section["defaults"]
    if command == "gail":  # GAIL's and VIME's own defaults, under the section's overrides
        from rlgen.agents.reward_sources import discriminator_defaults, vime_defaults

        defaults = {**defaults, "discriminator": {**discriminator_defaults(), **defaults["discriminator"]},
                    "vime": {**vime_defaults(), **defaults["vime"]}}
    if command == "bc":  # BehaviorCloning's training options: its own defaults, then the section's
        from rlgen.agents.bc import BehaviorCloning

        defaults = {**keyword_defaults(BehaviorCloning, exclude=("seed",)), **defaults}
    return defaults, section


def packaged_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The defaults the help texts quote (with the command's default preset), the section and its file."""
    from rlgen.common.config import deep_merge

    defaults, section = section_defaults(command)
    if "presets" in section:
        defaults = deep_merge(defaults, section["presets"][defaults["preset"]])
    return defaults, section, "rlgen/configs/imitation.yaml"


def _set_help(parser: argparse.ArgumentParser, option: str, text: str) -> None:
    for action in parser._actions:  # argparse has no public way to reword an option added elsewhere
        if option in action.option_strings:
            action.help = text


# -------------------------------------------------------------------------------------------- configuration
# Flags whose value lives in a section of the config: flag -> (section, key).
NESTED_FLAGS = {"gail": {"reward": ("discriminator", "reward"),
                         "policy_entropy_weight": ("discriminator", "policy_entropy_weight"),
                         "vime_eta": ("vime", "eta")}}


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration: the command's section of imitation.yaml, its env entry, --config, flags."""
    from rlgen.common.errors import UserError
    from rlgen.envs import resolve_env_id

    defaults, section = section_defaults(args.command)
    defaults = dict(defaults, command=args.command)
    nested = {key: vars(args).pop(key) for key in NESTED_FLAGS.get(args.command, {}) if key in vars(args)}
    cfg = resolve_config(args, defaults, section.get("tasks", {}), presets=section.get("presets"))
    for flag, value in nested.items():
        part, key = NESTED_FLAGS[args.command][flag]
        cfg[part] = {**cfg[part], key: value}
    cfg["env_name"] = cfg["env"]
    cfg["env"] = resolve_env_id(cfg["env"])
    if "algo_kwargs" in cfg:
        cfg["algo_kwargs"] = dict(cfg["algo_kwargs"].get(cfg["algo"], {}) or {})
        from rlgen.common.sb3_training import check_algo_kwargs, check_lr_schedule

        check_algo_kwargs(cfg["algo"], cfg["algo_kwargs"])  # before a run directory is made
        check_lr_schedule(cfg)
    if args.command == "expert":
        kwargs = cfg.get("policy_kwargs") or {}
        keyed = bool(kwargs) and set(kwargs) <= set(EXPERT_ALGOS)
        cfg["policy_kwargs"] = dict(kwargs.get(cfg["algo"], {}) or {}) if keyed else dict(kwargs)
        if cfg["algo"] in ("sac", "td3"):
            from gymnasium import spaces

            from rlgen.imitation.pipeline import env_spaces

            if not isinstance(env_spaces(cfg["env"])[1], spaces.Box):
                raise UserError(f"--algo {cfg['algo']} needs continuous (Box) actions; {cfg['env']} has discrete "
                                "actions: use --algo ppo")
    # `--resume RUN_DIR` alone: the run's own inputs (its demos, the policy it records).
    for key in ("demos", "policy"):
        if key in cfg and not cfg[key] and vars(args).get("resume") not in (None, "latest"):
            from rlgen.common.run_dir import saved_run_config

            cfg[key] = saved_run_config(Path(args.resume)).get(key)
    if args.command == "expert" and cfg.get("stop_return") is not None:
        from rlgen.common.sb3_training import stop_check_interval

        stop_check_interval(cfg)  # a bad value fails before the run directory is made
    if "eval_episodes" in cfg and (not isinstance(cfg["eval_episodes"], int) or cfg["eval_episodes"] < 1):
        raise UserError(f"eval_episodes must be a positive integer, got {cfg['eval_episodes']!r}")
    if args.command in ("gail", "bc"):
        allowed = (True, False, "running") if args.command == "gail" else (True, False)  # (BC has no rollouts)
        if cfg["policy_obs_norm"] not in allowed:
            raise UserError(f"policy_obs_norm must be one of {', '.join(map(str, allowed))} for {args.command}, got "
                            f"{cfg['policy_obs_norm']!r}")
        if args.command == "gail":
            from rlgen.agents.reward_sources import (
                check_discriminator_options,
                check_vime_options,
                discriminator_defaults,
            )

            check_discriminator_options(cfg["discriminator"], discriminator_defaults())
            check_vime_options(cfg["vime"])
        elif not (isinstance(cfg["val_fraction"], (int, float)) and 0 <= cfg["val_fraction"] < 1):
            raise UserError(f"val_fraction must be in [0, 1), got {cfg['val_fraction']!r}; fix it in the config file")
        if not cfg.get("demos"):
            raise UserError("no --demos given; record demonstrations with 'rlgen rollouts' and pass the npz file")
        cfg["demos"] = str(Path(cfg["demos"]).expanduser().resolve())
    return cfg


def run(args: argparse.Namespace) -> None:
    from rlgen.imitation import pipeline

    entry = {"expert": pipeline.train_expert, "rollouts": pipeline.record_rollouts, "gail": pipeline.train_gail,
             "bc": pipeline.train_bc}[args.command]
    entry(resolve(args), resume_request(args))
