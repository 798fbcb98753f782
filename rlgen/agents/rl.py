"""``rlgen vime|ppo|trpo``: on-policy RL on an env from a resolved run configuration (``rlgen/configs/rl.yaml``),
with VIME's exploration bonus for ``vime`` (:mod:`rlgen.agents.reward_sources`)."""

from __future__ import annotations

import logging
from typing import Any

from rlgen.common.run_dir import Resume, open_run

log = logging.getLogger("rlgen")


def train_rl(cfg: dict[str, Any], resume: Resume | None = None) -> dict[str, Any]:
    """Train (or, with ``resume``, go on with) the run ``cfg`` describes; return its summary."""
    from rlgen.agents.reward_sources import reward_source_for
    from rlgen.common.device import resolve_device, set_torch_threads
    from rlgen.common.sb3_training import train_sb3
    from rlgen.common.seeding import set_seed
    from rlgen.envs import SPARSE_TASKS

    run = open_run(cfg, cfg["env_name"], resume)
    cfg = run.config
    log.info("run directory: %s", run.path)
    set_seed(cfg["seed"])
    set_torch_threads(cfg.get("torch_threads", 1))
    device = str(resolve_device(cfg["device"]))
    summary = train_sb3(run, reward_source_for(cfg, device), device=device)
    sparse = cfg["env_name"] in SPARSE_TASKS  # whether the reward was found: said of the sparse-reward tasks only
    log.info("done: %d steps in %.0f s (%.0f steps/s); eval return %.3g%s",
             summary["steps"], summary["wall_clock_s"], summary["env_steps_per_s"] or 0,
             summary["eval_return_mean"] if summary["eval_return_mean"] is not None else float("nan"),
             f"; reached the sparse reward: {summary['reached_reward']}" if sparse else "")
    print(f"results: {run.path} (config.json, progress.csv, tb/, checkpoints/, model.zip, summary.json)")
    return summary
