"""How well and how fast VIME's BNN fits, for several training schedules (issue #3).

The BNN is fitted after every rollout on the same number of pool samples (5,000 by default); a schedule splits
them into ``n_updates`` minibatches of ``batch_size`` at some learning rate. The original ``openai/vime`` takes
500 updates of 10 at 1e-4. Each schedule is fitted after each of ``--rollouts`` random-action rollouts of 5,000
transitions (10 envs x 500 steps) and scored on a held-out rollout: the mean squared error of the BNN's mean
prediction of the normalised next state (lower is better), and the seconds per fit.

    python benchmarks/vime_bnn_fit.py --env SparseHalfCheetah

Writes ``benchmarks/results/vime-speed/bnn-fit-<env>.json`` (with command, commit, device and date) and prints a
table.
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

from rlgen.agents.vime.bnn import BayesianDynamicsModel
from rlgen.agents.vime.replay_pool import ReplayPool
from rlgen.common.provenance import device_description, git_commit, utc_now
from rlgen.common.sb3_training import make_vec_env_for
from rlgen.envs import resolve_env_id

# (n_updates, batch_size, learning_rate): the original's schedule, rlgen's previous and current defaults, others.
SCHEDULES = [(500, 10, 1e-4), (100, 50, 1e-3), (100, 50, 2e-3), (50, 100, 2e-3), (50, 100, 3e-3), (25, 200, 3e-3)]


def random_rollouts(env_id: str, n: int, n_envs: int = 10, steps: int = 500, seed: int = 0) -> list[list[np.ndarray]]:
    """``n`` rollouts of uniformly random actions, each ``[obs, actions, next_obs]`` with ``n_envs * steps`` rows."""
    venv = make_vec_env_for(env_id, n_envs, seed)
    venv.action_space.seed(seed)
    rollouts = []
    for _ in range(n):
        obs = venv.reset()
        rows = []
        for _ in range(steps):
            actions = np.stack([venv.action_space.sample() for _ in range(n_envs)])
            next_obs, _, _, _ = venv.step(actions)
            rows.append((obs, actions, next_obs))
            obs = next_obs
        rollouts.append([np.concatenate([r[i] for r in rows]).astype(np.float32) for i in range(3)])
    venv.close()
    return rollouts


def score(schedule: tuple[int, int, float], train: list[list[np.ndarray]], held_out: list[np.ndarray],
          seed: int) -> tuple[float, float]:
    """Held-out MSE after fitting on ``train`` rollout by rollout, and the mean seconds per fit."""
    n_updates, batch_size, lr = schedule
    torch.manual_seed(seed)
    obs_dim, act_dim = train[0][0].shape[1], train[0][1].shape[1]
    bnn = BayesianDynamicsModel(obs_dim, act_dim, learning_rate=lr, n_updates=n_updates, batch_size=batch_size)
    pool = ReplayPool(obs_dim, act_dim, capacity=100_000, min_size=500)
    rng = np.random.default_rng(seed)
    seconds = 0.0
    for rollout in train:
        pool.add_batch(*rollout)
        start = time.perf_counter()
        bnn.fit(pool, rng=rng)
        seconds += time.perf_counter() - start
    with torch.no_grad():
        inputs, targets = bnn.normalize(*held_out)
        mse = float((bnn(inputs, n_samples=10).mean(0) - targets).square().mean())
    return mse, seconds / len(train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="SparseHalfCheetah")
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/vime-speed")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = random_rollouts(resolve_env_id(args.env), args.rollouts + 1)
    train, held_out = data[:-1], data[-1]
    rows = []
    for schedule in SCHEDULES:
        results = [score(schedule, train, held_out, seed) for seed in range(args.seeds)]
        rows.append({"n_updates": schedule[0], "batch_size": schedule[1], "learning_rate": schedule[2],
                     "held_out_mse": float(np.mean([r[0] for r in results])),
                     "seconds_per_fit": float(np.mean([r[1] for r in results]))})
        print(f"{schedule[0]:>4} x {schedule[1]:<4} lr {schedule[2]:<7g} held-out MSE {rows[-1]['held_out_mse']:.3f}"
              f"  {rows[-1]['seconds_per_fit'] * 1000:.0f} ms per fit", flush=True)
    result = {"command": "python " + shlex.join(sys.argv), "commit": git_commit(), "device": device_description(),
              "date": utc_now(), "env": args.env, "rollouts": args.rollouts, "seeds": args.seeds, "schedules": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bnn-fit-{args.env}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
