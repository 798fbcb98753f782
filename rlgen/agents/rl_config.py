"""The options of ``rlgen vime|ppo|trpo`` and their resolution into the run configuration that
:func:`rlgen.agents.rl.train_rl` runs. The defaults are ``rlgen/configs/rl.yaml``'s (per-env entries keyed by
short name), over VIME's own keyword defaults under ``vime``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlgen.common.options import Flag
from rlgen.common.resolve import resolve_config, resume_request, run_flags

WHERE = "rlgen/configs/rl.yaml"
ENV = Flag("env", "env: a short rlgen name (SparseHalfCheetah, SparseMountainCar, SparseCartpoleSwingup, "
           "SparseDoublePendulum, SwimmerGather) or any gymnasium id")
SHARED = [
    Flag("n_envs", "envs stepped together, one batched policy call for all", kind=int, minimum=1),
    Flag("obs_norm", "the policy standardises observations with running statistics of its rollouts", kind=bool),
    Flag("reward_norm", "divide rewards by the running std of the discounted return, so the critic learns returns "
         "of unit scale", kind=bool)]
RUN_FLAGS = run_flags("steps")
FLAGS: dict[str, list[Flag]] = {
    "vime": [ENV, Flag("algo", "policy optimiser", choices=("ppo", "trpo")),
             Flag("vime.eta", "weight of the normalised information gain in the reward", kind=float, minimum=0),
             *SHARED],
    "ppo": [ENV, *SHARED],
    "trpo": [ENV, *SHARED],
}


def flag_groups(command: str) -> list[tuple[str | None, list[Flag]]]:
    return [(None, FLAGS[command]), ("run options", RUN_FLAGS)]


def packaged_defaults(command: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The defaults (the same for vime, ppo and trpo), the section holding them and its file."""
    from rlgen.agents.reward_sources import vime_defaults
    from rlgen.common.config import packaged_config

    section = packaged_config("rl.yaml")
    defaults = {**section["defaults"], "vime": {**vime_defaults(), **section["defaults"]["vime"]}}
    return defaults, section, WHERE


def resolve(command: str, flags: Mapping[str, Any]) -> dict[str, Any]:
    """The run configuration of ``rlgen <command>`` with ``flags``: packaged defaults for the env, --config, flags."""
    from rlgen.agents.reward_sources import check_vime_options
    from rlgen.common.sb3_training import check_algo_kwargs, check_lr_schedule, check_policy_kwargs
    from rlgen.envs import resolve_env_id, short_name

    flags = dict(flags)
    if "env" in flags:  # per-env defaults are keyed by short name, whichever form the user typed
        flags["env"] = short_name(flags["env"])
    defaults, section, _ = packaged_defaults(command)
    cfg = resolve_config(flags, dict(defaults, command=command), [*FLAGS[command], *RUN_FLAGS],
                         section.get("tasks", {}), canonical=resolve_env_id)
    if command != "vime":
        cfg["algo"] = command
        cfg.pop("vime", None)
    cfg["env_name"] = short_name(cfg["env"])
    cfg["env"] = resolve_env_id(cfg["env"])
    algo_kwargs = dict(cfg["algo_kwargs"].get(cfg["algo"], {}))
    check_algo_kwargs(cfg["algo"], algo_kwargs)  # before a run directory is made
    check_policy_kwargs(cfg["algo"], cfg.get("policy_kwargs"))
    if command == "vime":
        check_vime_options(cfg["vime"], eta_flag="--eta")
    check_lr_schedule(cfg)
    if "batch_size" in algo_kwargs and "n_steps" in algo_kwargs:
        # A minibatch cannot exceed the rollout (e.g. after --n-envs lowered it).
        algo_kwargs["batch_size"] = min(algo_kwargs["batch_size"], algo_kwargs["n_steps"] * cfg["n_envs"])
    cfg["algo_kwargs"] = algo_kwargs
    return cfg


def run(command: str, flags: Mapping[str, Any]) -> None:
    """``rlgen <command>`` with ``flags`` (the options the user gave, by key)."""
    from rlgen.agents.rl import train_rl

    train_rl(resolve(command, flags), resume_request(flags, [*FLAGS[command], *RUN_FLAGS]))
