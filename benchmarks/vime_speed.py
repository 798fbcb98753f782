"""VIME's speed figures (issue #3), each measured in one process so the ratios share the machine's state.

1. information gain of one 5,000-transition batch (the original's batch) with the default BNN;
2. env steps/s of rlgen's training loop (batched envs) against SB3's single-env default, same algorithm;
3. wall-clock of VIME against the same algorithm without VIME, same budget.

    python benchmarks/vime_speed.py --env SparseHalfCheetah --steps 50000

Writes ``benchmarks/results/vime-speed/<env>-<algo>.json`` (figures with command, commit, device and date) and
prints it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sb3_contrib import TRPO
from stable_baselines3 import PPO

from rlgen.agents.vime import VIME
from rlgen.common.config import deep_merge, packaged_config
from rlgen.common.normalization import ObsNormCallback, ReturnScale, RunningObsNormExtractor
from rlgen.common.provenance import device_description, git_commit, utc_now
from rlgen.common.reward_relabel import EnvReward, RewardRelabelCallback
from rlgen.common.sb3_training import make_vec_env_for, policy_kwargs_from_config
from rlgen.envs import resolve_env_id

ALGOS = {"trpo": TRPO, "ppo": PPO}


def time_information_gain(model, repeats: int = 10) -> dict[str, float]:
    """Median time of VIME's information gain on a 5,000-transition rollout of ``model``'s env."""
    vime = VIME(model, seed=0)
    env = model.get_env()
    n = 5000 // env.num_envs
    obs = env.reset()
    rows = []
    for _ in range(n):
        action = np.stack([env.action_space.sample() for _ in range(env.num_envs)])
        next_obs, _, _, _ = env.step(action)
        rows.append((obs, action, next_obs))
        obs = next_obs
    o, a, o2 = (np.concatenate([r[i] for r in rows]).astype(np.float32) for i in range(3))
    vime.pool.add_batch(o, a, o2)
    vime.bnn.fit(vime.pool)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        vime.information_gain(o, a, o2)
        times.append(time.perf_counter() - start)
    return {"batch": len(o), "seconds_median": float(np.median(times)), "seconds_min": float(np.min(times))}


def train_time(env_id: str, algo: str, steps: int, n_envs: int, algo_kwargs: dict, policy_kwargs: dict | None,
               use_vime: bool, seed: int = 0, obs_norm: bool = False, reward_norm: bool = False) -> float:
    """Seconds to train for ``steps`` env steps, as ``rlgen vime|trpo|ppo`` would (``obs_norm`` and ``reward_norm``
    as in its config)."""
    venv = make_vec_env_for(env_id, n_envs, seed)
    callbacks = []
    if obs_norm:
        policy_kwargs = {**(policy_kwargs or {}), "features_extractor_class": RunningObsNormExtractor}
        callbacks.append(ObsNormCallback())
    model = ALGOS[algo]("MlpPolicy", venv, seed=seed, policy_kwargs=policy_kwargs, **algo_kwargs)
    start = time.perf_counter()
    if use_vime:
        VIME(model, seed=seed).learn(steps, callback=callbacks, reward_norm=reward_norm)
    else:
        if reward_norm:
            callbacks.append(RewardRelabelCallback(EnvReward(), ReturnScale(model.gamma, n_envs)))
        model.learn(steps, callback=callbacks)
    elapsed = time.perf_counter() - start
    venv.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SparseHalfCheetah")
    parser.add_argument("--algo", default="trpo", choices=sorted(ALGOS))
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="alternating baseline/VIME runs; medians compared")
    parser.add_argument("--out", default="benchmarks/results/vime-speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    packaged = packaged_config("rl.yaml")
    cfg = deep_merge(packaged["defaults"], packaged["tasks"].get(args.env, {}))  # as `rlgen vime --env ENV`
    env_id = resolve_env_id(args.env)
    policy_kwargs = policy_kwargs_from_config(cfg["policy_kwargs"])
    algo_kwargs = cfg["algo_kwargs"][args.algo]
    n_envs = cfg["n_envs"]
    obs_norm, reward_norm = bool(cfg.get("obs_norm")), bool(cfg.get("reward_norm"))

    probe = ALGOS[args.algo]("MlpPolicy", make_vec_env_for(env_id, n_envs, 0), policy_kwargs=policy_kwargs,
                             **algo_kwargs)
    ig = time_information_gain(probe)

    # SB3's single-env default: one env, the algorithm's own default hyperparameters, same policy network.
    sb3_default = train_time(env_id, args.algo, args.steps, 1, {}, policy_kwargs, use_vime=False)
    # Baseline and VIME alternate, so a slow spell of the machine hits both; the medians are compared.
    baselines, vimes = [], []
    for repeat in range(args.repeats):
        baselines.append(train_time(env_id, args.algo, args.steps, n_envs, algo_kwargs, policy_kwargs, False, repeat,
                                    obs_norm, reward_norm))
        vimes.append(train_time(env_id, args.algo, args.steps, n_envs, algo_kwargs, policy_kwargs, True, repeat,
                                obs_norm, reward_norm))
    baseline, with_vime = float(np.median(baselines)), float(np.median(vimes))

    result = {
        "command": "python " + shlex.join(sys.argv), "commit": git_commit(), "device": device_description(), "date": utc_now(),
        "env": args.env, "algo": args.algo, "steps": args.steps, "n_envs": n_envs, "torch_threads": args.threads,
        "obs_norm": obs_norm, "reward_norm": reward_norm,
        "repeats": args.repeats,
        "information_gain_5000_s": ig["seconds_median"],
        "sb3_single_env_steps_per_s": args.steps / sb3_default,
        "rlgen_batched_steps_per_s": args.steps / baseline,
        "batched_over_single_env": sb3_default / baseline,
        "vime_steps_per_s": args.steps / with_vime,
        "vime_over_baseline_wall_clock": with_vime / baseline,
        "vime_over_baseline_each_repeat": [v / b for v, b in zip(vimes, baselines)],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.env}-{args.algo}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
