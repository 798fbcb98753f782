"""The imitation pipeline from resolved run configurations (``rlgen/configs/imitation.yaml``): train an expert,
record its demonstrations, imitate them with GAIL or behaviour cloning. ``rlgen expert|rollouts|gail|bc`` run
these; a script can call them with configurations of its own. Each writes a run directory and returns its
summary (also ``summary.json``); ``resume`` goes on with an earlier run (:class:`~rlgen.common.run_dir.Resume`).

A new run's inputs (demos, the policy to record) are loaded and checked before its directory is made, so a bad
input leaves nothing behind; a resumed run uses the inputs its saved config names.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from rlgen.common.run_dir import Resume, RunDir, open_run

log = logging.getLogger("rlgen")


def _start(cfg: dict[str, Any], resume: Resume | None) -> tuple[RunDir, dict[str, Any], str]:
    """Open the run directory, seed everything, pick the device."""
    from rlgen.common.device import resolve_device, set_torch_threads
    from rlgen.common.seeding import set_seed

    run_dir = open_run(cfg, cfg["env_name"], resume)
    device = str(resolve_device(run_dir.config["device"]))  # a resumed run's own, unless --device moves it
    log.info("run directory: %s", run_dir.path)
    set_seed(run_dir.config["seed"])
    set_torch_threads(run_dir.config.get("torch_threads", 1))
    return run_dir, run_dir.config, device


def env_spaces(env_id: str) -> tuple[Any, Any]:
    from rlgen.common.sb3_training import make_env

    env = make_env(env_id)
    spaces = (env.observation_space, env.action_space)
    env.close()
    return spaces


def expert_data(cfg: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Load and check the demos, keep the first ``trajectories`` and subsample them (seeded, so a resumed run
    gets the same pairs). Returns ``(demos, obs, actions)``."""
    from rlgen.common.seeding import rng_stream
    from rlgen.imitation.demos import load_demos

    obs_space, act_space = env_spaces(cfg["env"])
    demos = load_demos(cfg["demos"], cfg["env"], obs_space, act_space)
    chosen = demos.first_episodes(cfg.get("trajectories"))
    # The subset changes with the seed (the original fixes it with RandomState(0)): a multi-seed benchmark then
    # also covers the luck of which pairs were kept.
    obs, actions = chosen.subsample(int(cfg["subsample"]), rng_stream(cfg["seed"], "expert_subsample"))
    return demos, obs, actions


def _start_imitation(cfg: dict[str, Any], resume: Resume | None) -> tuple[RunDir, dict[str, Any], str, Any, Any, Any]:
    """:func:`_start` for commands that learn from demos: a new run's demos are checked before its directory is
    made (a resumed run uses the demos its saved config names). Returns ``(run_dir, cfg, device, demos, obs,
    actions)``."""
    from rlgen.agents.gail import obs_norm_policy_kwargs

    data = None if resume is not None else expert_data(cfg)
    run_dir, cfg, device = _start(cfg, resume)
    demos, expert_obs, expert_actions = data if data is not None else expert_data(cfg)
    if not run_dir.resumed:
        if cfg.get("policy_obs_norm"):
            cfg["policy_kwargs"] = {**(cfg.get("policy_kwargs") or {}),
                                    **obs_norm_policy_kwargs(expert_obs, running=cfg["policy_obs_norm"] == "running")}
        cfg["expert_pairs"] = len(expert_obs)
        run_dir.save_config()
    return run_dir, cfg, device, demos, expert_obs, expert_actions


def _expert_return(cfg: dict[str, Any], demos: Any) -> float | None:
    if cfg.get("expert_return") is not None:
        return float(cfg["expert_return"])
    value = float(demos.episode_returns.mean())
    return value if math.isfinite(value) else None


def _fmt(value: float | None, digits: str = ".1f") -> str:
    return "n/a" if value is None else format(value, digits)


def train_expert(cfg: dict[str, Any], resume: Resume | None = None) -> dict[str, Any]:
    """``rlgen expert``: an SB3 expert, its deterministic return against the random policy's and its target."""
    from rlgen.common.sb3_training import train_sb3
    from rlgen.imitation.evaluation import random_policy_returns

    run_dir, cfg, device = _start(cfg, resume)
    target = cfg.get("target_return")

    def report(summary: dict[str, Any]) -> dict[str, Any]:
        rnd = random_policy_returns(cfg["env"], cfg["eval_episodes"], cfg["seed"])
        return {"random_return_mean": rnd["return_mean"], "target_return": target,
                "meets_target": None if target is None else bool(summary["eval_return_mean"] >= target)}

    summary = train_sb3(run_dir, None, device=device, report=report)
    stopped = (f"; stopped at step {summary['steps']:,} on reaching stop_return {summary['stop_return']:g}"
               if summary.get("stopped_early") else "")
    print(f"expert {cfg['algo']} on {cfg['env']}: deterministic return {summary['eval_return_mean']:.1f} "
          f"+- {summary['eval_return_std']:.1f} over {cfg['eval_episodes']} episodes (random policy "
          f"{summary['random_return_mean']:.1f}; target {_fmt(target)}{'' if target is None else ', met' if summary['meets_target'] else ', NOT met'}"
          f"{stopped})")
    print(f"results: {run_dir.path} (model.zip, summary.json, config.json, progress.csv, tb/, checkpoints/)")
    return summary


def record_rollouts(cfg: dict[str, Any], resume: Resume | None = None) -> dict[str, Any]:
    """``rlgen rollouts``: whole episodes of a policy, saved as a demos npz (``out`` ending in ``.npz``, else
    ``demos.npz`` in the run directory)."""
    import numpy as np

    from rlgen.common.checkpoint import atomic_write_json
    from rlgen.common.device import resolve_device
    from rlgen.common.errors import UserError
    from rlgen.imitation.demos import record_demos, save_demos
    from rlgen.imitation.evaluation import load_policy

    if not cfg.get("policy"):
        raise UserError("no --policy given; pass the model.zip or run directory of an 'rlgen expert' run")
    cfg["policy"] = str(Path(cfg["policy"]).expanduser().resolve())
    if str(cfg["out"]).endswith(".npz"):
        cfg["demos_file"] = str(Path(cfg["out"]).expanduser().resolve())
        cfg["out"] = "runs"
        from rlgen.common.run_dir import ensure_writable_dir

        ensure_writable_dir(Path(cfg["demos_file"]).parent)  # before the run directory is made
    policy = load_policy(cfg["policy"], cfg["env"], device=str(resolve_device(cfg["device"])))  # fail early
    run_dir, cfg, _ = _start(cfg, resume)
    demos_path = Path(cfg["demos_file"]) if cfg.get("demos_file") else run_dir.path / "demos.npz"
    demos = record_demos(policy, cfg["env"], cfg["episodes"], int(cfg.get("steps", 0)), bool(cfg["deterministic"]),
                         cfg["seed"], source=cfg["policy"])
    try:
        save_demos(demos_path, demos)
    except OSError as exc:
        raise UserError(f"cannot write demos to {demos_path} ({exc.strerror or exc}); pass a writable --out") from exc
    returns = demos.episode_returns
    summary = {"env": cfg["env"], "policy": cfg["policy"], "demos": str(demos_path), "episodes": demos.n_episodes,
               "transitions": demos.n_transitions, "deterministic": bool(cfg["deterministic"]),
               "return_mean": float(returns.mean()), "return_std": float(returns.std()),
               "episode_length_mean": float(np.mean(demos.episode_lengths)),
               "terminated_episodes": int(demos.terminated.sum()), "truncated_episodes": int(demos.truncated.sum())}
    atomic_write_json(run_dir.path / "summary.json", summary)
    print(f"recorded {demos.n_episodes} episodes ({demos.n_transitions} transitions) of {cfg['env']}: return "
          f"{summary['return_mean']:.1f} +- {summary['return_std']:.1f}")
    print(f"demos: {demos_path}")
    print(f"results: {run_dir.path} (config.json, summary.json)")
    return summary


def train_gail(cfg: dict[str, Any], resume: Resume | None = None) -> dict[str, Any]:
    """``rlgen gail``: imitate the demos with GAIL's discriminator reward (:mod:`rlgen.agents.reward_sources`)."""
    from rlgen.agents.reward_sources import reward_source_for
    from rlgen.common.sb3_training import train_sb3
    from rlgen.imitation.evaluation import imitation_report

    run_dir, cfg, device, demos, expert_obs, expert_actions = _start_imitation(cfg, resume)
    every = int(cfg["subsample"])
    log.info("GAIL on %s: %d expert (s, a) pairs from %d trajectories (%s)", cfg["env"], len(expert_obs),
             cfg.get("trajectories") or demos.n_episodes, "all pairs" if every == 1 else f"every {every}th pair")

    def report(summary: dict[str, Any]) -> dict[str, Any]:
        figures = imitation_report(None, cfg["env"], cfg["eval_episodes"], cfg["seed"], _expert_return(cfg, demos),
                                   policy_eval={"return_mean": summary["eval_return_mean"],
                                                "return_std": summary["eval_return_std"]})
        return {**figures, "trajectories": cfg.get("trajectories") or demos.n_episodes,
                "expert_pairs": len(expert_obs)}

    chosen = demos.first_episodes(cfg.get("trajectories"))
    ended = int(chosen.terminated.sum())  # one absorbing pair per terminated episode (discriminator.absorbing)
    reward = reward_source_for(cfg, device, expert_obs=expert_obs, expert_actions=expert_actions,
                               expert_absorbing_share=ended / (len(chosen.obs) + ended), expert_transitions=chosen)
    summary = train_sb3(run_dir, reward, device=device, report=report)
    _print_report("gail", cfg, summary)
    print(f"results: {run_dir.path} (model.zip, summary.json, config.json, progress.csv, tb/, checkpoints/)")
    return summary


def _print_report(name: str, cfg: dict[str, Any], summary: dict[str, Any]) -> None:
    print(f"{name} on {cfg['env']}: return {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f} "
          f"over {summary['eval_episodes']} deterministic episodes; expert {_fmt(summary['expert_return_mean'])}, "
          f"random {summary['random_return_mean']:.1f}; normalised return "
          f"{_fmt(summary['normalised_return'], '.3f')}")


def train_bc(cfg: dict[str, Any], resume: Resume | None = None) -> dict[str, Any]:
    """``rlgen bc``: behaviour cloning of the demos (:class:`~rlgen.agents.bc.BehaviorCloning`), the policy kept
    being the epoch's with the best held-out score."""
    import time

    import torch
    from stable_baselines3 import PPO

    from rlgen.agents.bc import BehaviorCloning
    from rlgen.common.checkpoint import CheckpointFolder, atomic_write, atomic_write_json, load_torch
    from rlgen.common.logger import make_logger
    from rlgen.common.sb3_training import make_vec_env_for, policy_kwargs_from_config
    from rlgen.imitation.evaluation import evaluate_returns, imitation_report

    run_dir, cfg, device, demos, expert_obs, expert_actions = _start_imitation(cfg, resume)

    venv = make_vec_env_for(cfg["env"], 1, cfg["seed"])
    model = PPO("MlpPolicy", venv, seed=cfg["seed"], device=device, policy_kwargs=policy_kwargs_from_config(cfg["policy_kwargs"]))
    bc = BehaviorCloning(model, expert_obs, expert_actions, learning_rate=cfg["learning_rate"],
                         batch_size=cfg["batch_size"], entropy_weight=cfg["entropy_weight"],
                         l2_weight=cfg["l2_weight"], val_fraction=cfg["val_fraction"], seed=cfg["seed"])
    checkpoints = CheckpointFolder(run_dir.checkpoints, ("bc_*.pt",))
    elapsed_before, resume_epoch = 0.0, None
    latest = checkpoints.latest() if run_dir.resumed else None
    if latest is not None:
        state = load_torch(checkpoints.file(latest, "state"))
        bc.load_state_dict(state["bc"])
        elapsed_before, resume_epoch = float(state["elapsed"]), bc.epoch
        log.info("resuming %s from epoch %d", run_dir.path, bc.epoch)
    logger = make_logger(run_dir.path, ("bc/neg_log_likelihood", "bc/val_neg_log_likelihood"), resume_epoch)
    start = time.time()

    def save_checkpoint() -> None:
        state = {"bc": bc.state_dict(), "elapsed": elapsed_before + time.time() - start}
        checkpoints.save({"state": (f"bc_{bc.epoch}.pt", lambda tmp: torch.save(state, tmp))}, step=bc.epoch)

    from tqdm import tqdm

    total = int(cfg["epochs"])
    with tqdm(total=total, initial=bc.epoch, unit="epoch", desc="bc", disable=None) as bar:
        while bc.epoch < total:
            metrics = bc.train_epoch()
            bar.update(1)
            if bc.epoch % int(cfg["log_every"]) == 0 or bc.epoch == total:
                for key, value in metrics.items():
                    logger.record(key, value)
                logger.dump(step=bc.epoch)
            if cfg["checkpoint_every"] and bc.epoch % int(cfg["checkpoint_every"]) == 0:
                save_checkpoint()
    save_checkpoint()  # (the last epoch's policy, from which a longer run would go on)
    wall = elapsed_before + time.time() - start
    kept_epoch = bc.restore_best()
    atomic_write(run_dir.path / "model.zip", lambda tmp: model.save(tmp))
    venv.close()

    ev = evaluate_returns(model, cfg["env"], cfg["eval_episodes"], cfg["seed"])
    summary = {"env": cfg["env"], "algo": "bc", "seed": cfg["seed"], "epochs": bc.epoch,
               "wall_clock_s": round(wall, 2), "trajectories": cfg.get("trajectories") or demos.n_episodes,
               "expert_pairs": len(expert_obs), "train_action_accuracy": bc.action_accuracy(expert_obs, expert_actions),
               "kept_epoch": kept_epoch,
               "val_score": float(bc.best_score) if bc.best_policy is not None else None}
    summary.update(imitation_report(model, cfg["env"], cfg["eval_episodes"], cfg["seed"], _expert_return(cfg, demos),
                                    policy_eval=ev))
    summary["eval_returns"] = ev["returns"]
    atomic_write_json(run_dir.path / "summary.json", summary)
    _print_report("bc", cfg, summary)
    print(f"results: {run_dir.path} (model.zip, summary.json, config.json, progress.csv, tb/, checkpoints/)")
    return summary
