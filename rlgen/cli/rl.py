"""``rlgen vime|ppo|trpo``: on-policy RL on an env, with or without VIME's information-gain bonus."""

from __future__ import annotations

import argparse
from typing import Any

from rlgen.cli.options import S, add_common_options, nonnegative_float, positive_int, resolve_config, resume_request


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=S, help="env: a short rlgen name (SparseHalfCheetah, SparseMountainCar, "
                        "SparseCartpoleSwingup, SparseDoublePendulum, SwimmerGather) or any gymnasium id")
    if command == "vime":
        parser.add_argument("--algo", choices=("ppo", "trpo"), default=S, help="policy optimiser")
        parser.add_argument("--eta", type=nonnegative_float, default=S,
                            help="weight of the normalised information gain in the reward (default 1e-4)")
    parser.add_argument("--n-envs", dest="n_envs", type=positive_int, default=S,
                        help="envs stepped together, one batched policy call for all")
    parser.add_argument("--obs-norm", dest="obs_norm", action=argparse.BooleanOptionalAction, default=S,
                        help="the policy standardises observations with running statistics of its rollouts "
                        "(default: on for the MuJoCo tasks, off for the classic ones)")
    parser.add_argument("--reward-norm", dest="reward_norm", action=argparse.BooleanOptionalAction, default=S,
                        help="divide rewards by the running std of the discounted return, so the critic learns "
                        "returns of unit scale (default: see rlgen/configs/rl.yaml)")
    add_common_options(parser, budget="steps")


def packaged_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The defaults (rl.yaml's, over VIME's own under ``vime``; the same for vime, ppo and trpo), the section holding
    them and its file."""
    from rlgen.agents.reward_sources import vime_defaults
    from rlgen.common.config import packaged_config

    section = packaged_config("rl.yaml")
    defaults = {**section["defaults"], "vime": {**vime_defaults(), **section["defaults"]["vime"]}}
    return defaults, section, "rlgen/configs/rl.yaml"


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration: packaged defaults for the env, then --config, then flags."""
    from rlgen.envs import resolve_env_id, short_name

    if "env" in vars(args):  # per-task defaults are keyed by short name, whichever form the user typed
        args.env = short_name(args.env)
    defaults, section, _ = packaged_defaults(args.command)
    eta = vars(args).pop("eta", None)
    cfg = resolve_config(args, dict(defaults, command=args.command), section.get("tasks", {}))
    if eta is not None:
        cfg["vime"]["eta"] = eta
    if args.command != "vime":
        cfg["algo"] = args.command
        cfg.pop("vime", None)
    cfg["env_name"] = short_name(cfg["env"])
    cfg["env"] = resolve_env_id(cfg["env"])
    algo_kwargs = dict(cfg["algo_kwargs"].get(cfg["algo"], {}))
    from rlgen.common.sb3_training import check_algo_kwargs, check_lr_schedule

    check_algo_kwargs(cfg["algo"], algo_kwargs)  # before a run directory is made
    check_lr_schedule(cfg)
    if "batch_size" in algo_kwargs and "n_steps" in algo_kwargs:
        # A minibatch cannot exceed the rollout (e.g. after --n-envs lowered it).
        algo_kwargs["batch_size"] = min(algo_kwargs["batch_size"], algo_kwargs["n_steps"] * cfg["n_envs"])
    cfg["algo_kwargs"] = algo_kwargs
    return cfg


def run(args: argparse.Namespace) -> None:
    from rlgen.agents.rl import train_rl

    train_rl(resolve(args), resume_request(args))
