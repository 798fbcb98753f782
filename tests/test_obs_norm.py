"""Running observation normalisation inside SB3 policies (``obs_norm`` of ``rlgen ppo|trpo|vime``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import TRPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from rlgen.cli import main
from rlgen.common.normalization import ObsNormCallback, RunningObsNormExtractor
from rlgen.common.sb3_training import make_env


def test_extractor_passes_through_until_updated_then_standardises():
    space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    extractor = RunningObsNormExtractor(space, clip=5.0)
    x = torch.tensor([[1.0, 20.0, -300.0]])
    assert torch.equal(extractor(x), x)
    data = torch.randn(1000, 3) * torch.tensor([1.0, 10.0, 100.0]) + torch.tensor([0.0, 20.0, -300.0])
    extractor.norm.update(data)
    out = extractor(data)
    assert torch.allclose(out.mean(0), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(0), torch.ones(3), atol=1e-2)
    assert extractor(torch.tensor([[1e6, 0.0, 0.0]]))[0, 0] == 5.0  # clipped


class RecordCounts(BaseCallback):
    """The statistics' count at each rollout end, i.e. what the following policy update sees."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: list[int] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        (norm,) = [m.norm for m in self.model.policy.modules() if isinstance(m, RunningObsNormExtractor)]
        self.counts.append(int(norm.count))


def test_statistics_change_only_between_an_update_and_the_next_rollout():
    env = make_vec_env(lambda: make_env("CartPole-v1"), n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0,
                policy_kwargs={"features_extractor_class": RunningObsNormExtractor})
    recorder = RecordCounts()
    model.learn(3 * 32, callback=[ObsNormCallback(), recorder])
    # Rollout k is trained on with the statistics of rollouts 1..k-1: each rollout joins them only afterwards.
    assert recorder.counts == [0, 32, 64]
    (norm,) = [m.norm for m in model.policy.modules() if isinstance(m, RunningObsNormExtractor)]
    assert norm.mean.abs().sum() > 0
    # The statistics are buffers of the policy: they travel in the model zip.
    assert any(k.endswith("norm.mean") for k in model.policy.state_dict())


@pytest.mark.slow
def test_cli_obs_norm_is_on_for_mujoco_tasks_and_can_be_turned_off(tmp_path, capsys):
    common = ["--steps", "3000", "--n-envs", "2", "--out", str(tmp_path), "--seed", "0"]
    assert main(["trpo", "--env", "SparseHalfCheetah", *common]) == 0, capsys.readouterr().err
    assert main(["trpo", "--env", "SparseHalfCheetah", "--no-obs-norm", *common, "--seed", "1"]) == 0
    on = json.loads(next(tmp_path.glob("trpo-SparseHalfCheetah-s0-*/config.json")).read_text())
    off = json.loads(next(tmp_path.glob("trpo-SparseHalfCheetah-s1-*/config.json")).read_text())
    assert on["obs_norm"] is True and off["obs_norm"] is False
    model = TRPO.load(next(tmp_path.glob("trpo-SparseHalfCheetah-s0-*/model.zip")), device="cpu")
    (norm,) = [m.norm for m in model.policy.modules() if isinstance(m, RunningObsNormExtractor)]
    assert int(norm.count) == 2000  # rollouts 1 and 2 of 3 (each joins the statistics after its update)


def test_cli_reward_norm_scales_returns_and_resumes_its_statistics(tmp_path, capsys):
    """``--reward-norm``: rewards reach the critic divided by the running std of the discounted return; the
    statistics are checkpointed and carried on by a resumed run."""
    (tmp_path / "small.yaml").write_text("algo_kwargs: {ppo: {n_steps: 100, batch_size: 100, n_epochs: 1}}\n"
                                         "checkpoint_every: 200\n")
    common = ["--env", "Pendulum-v1", "--n-envs", "2", "--out", str(tmp_path), "--config", str(tmp_path / "small.yaml")]
    assert main(["ppo", *common, "--reward-norm", "--steps", "400"]) == 0, capsys.readouterr().err
    run = next(tmp_path.glob("ppo-Pendulum-v1-s0-*"))
    # No --env: the run directory names its env.
    assert main(["ppo", "--resume", str(run), "--steps", "800"]) == 0, capsys.readouterr().err

    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    scale = torch.load(run / "checkpoints" / latest["extras"], weights_only=True)["return_scale"]
    assert scale["count"] == 800  # every transition of both invocations, none twice
    header, *rows = (run / "progress.csv").read_text().splitlines()
    column = header.split(",").index("rollout/return_std")
    stds = [float(row.split(",")[column]) for row in rows]
    assert len(stds) == 4 and min(stds) > 5  # Pendulum's returns (rewards of -1 to -16 a step) are far from unit scale


def test_running_statistics_can_start_from_expert_data_and_keep_updating(tmp_path):
    """GAIL's `policy_obs_norm: running`: the policy starts standardised with the expert data's statistics (as the
    original code) and every rollout joins them after the update on it."""
    from rlgen.common.normalization import obs_norm_policy_kwargs
    from rlgen.common.sb3_training import policy_kwargs_from_config

    expert_obs = np.random.default_rng(0).normal([0.0, 1.0, 0.0, -1.0], [1.0, 2.0, 0.1, 0.5], size=(50, 4))
    kwargs = policy_kwargs_from_config(obs_norm_policy_kwargs(expert_obs, running=True))
    env = make_vec_env(lambda: make_env("CartPole-v1"), n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=1, seed=0, policy_kwargs=kwargs)
    (norm,) = [m.norm for m in model.policy.modules() if isinstance(m, RunningObsNormExtractor)]
    np.testing.assert_allclose(norm.mean.numpy(), expert_obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), expert_obs.var(0), rtol=1e-5)
    recorder = RecordCounts()
    model.learn(3 * 32, callback=[ObsNormCallback(), recorder])
    assert recorder.counts == [50, 82, 114]
    # a saved model comes back with the statistics it had, not those it started from
    model.save(tmp_path / "model.zip")
    loaded_policy = PPO.load(tmp_path / "model.zip").policy
    (loaded,) = [m.norm for m in loaded_policy.modules() if isinstance(m, RunningObsNormExtractor)]
    assert int(loaded.count) == 114 and torch.allclose(loaded.mean, norm.mean)
