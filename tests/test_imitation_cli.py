"""``rlgen expert|rollouts|gail|bc``: one-line errors, run directories and results, resume, and the CartPole
pipeline end to end (expert -> rollouts -> gail/bc -> evaluation)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import PPO

from rlgen.cli import main
from rlgen.common.normalization import RunningObsNormExtractor
from rlgen.common.seeding import rng_stream
from rlgen.imitation.demos import load_demos, record_demos, save_demos
from tests.cli_helpers import fails_cleanly, rlgen, succeeds


class CartPoleController:
    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return (np.asarray(obs)[..., 2] + 0.5 * np.asarray(obs)[..., 3] > 0).astype(np.int64), None


@pytest.fixture(scope="module")
def cartpole_demos(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demos") / "cartpole.npz"
    save_demos(path, record_demos(CartPoleController(), "CartPole-v1", episodes=3, seed=0, progress=False))
    return path


@pytest.fixture(scope="module")
def cartpole_model(tmp_path_factory) -> Path:
    from stable_baselines3 import PPO

    path = tmp_path_factory.mktemp("model") / "model.zip"
    PPO("MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [8]}, seed=0).save(path)
    return path


def test_help_shows_each_commands_options(capsys):
    for command, options in {"expert": ["--env", "--algo", "--steps"],
                             "rollouts": ["--policy", "--episodes", "--stochastic", ".npz"],
                             "gail": ["--demos", "--trajectories", "--subsample", "--algo", "--reward", "--steps"],
                             "bc": ["--demos", "--trajectories", "--epochs", "--batch-size"]}.items():
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for option in options + ["--seed", "--device", "--out", "--resume", "--config"]:
            assert option in text, (command, option)


def test_bad_demos_and_flags_are_one_line_errors(capsys, tmp_path, cartpole_demos):
    out = ["--out", str(tmp_path / "runs")]
    fails_cleanly(capsys, ["gail", "--env", "CartPole-v1", *out], "--demos")
    fails_cleanly(capsys, ["gail", "--env", "CartPole-v1", "--demos", str(tmp_path / "none.npz"), *out],
                  "none.npz", "does not exist")
    fails_cleanly(capsys, ["gail", "--env", "Pendulum-v1", "--demos", str(cartpole_demos), *out],
                  "recorded on CartPole-v1, not Pendulum-v1")
    fails_cleanly(capsys, ["bc", "--env", "CartPole-v1", "--demos", str(cartpole_demos), "--trajectories", "9", *out],
                  "3 trajectories", "--trajectories")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    fails_cleanly(capsys, ["bc", "--env", "CartPole-v1", "--demos", str(garbage), *out], "not a readable npz")
    fails_cleanly(capsys, ["gail", "--env", "NoSuchEnv-v9", "--demos", str(cartpole_demos), *out], "NoSuchEnv-v9")
    fails_cleanly(capsys, ["gail", "--env", "CartPole-v1", "--reward", "log(D)"], "invalid choice")
    fails_cleanly(capsys, ["expert", "--env", "CartPole-v1", "--algo", "dqn"], "invalid choice")
    fails_cleanly(capsys, ["expert", "--env", "CartPole-v1", "--algo", "sac", *out], "--algo sac", "Box")
    fails_cleanly(capsys, ["bc", "--env", "CartPole-v1", "--demos", str(cartpole_demos), "--trajectories", "0"],
                  "positive")
    fails_cleanly(capsys, ["gail", "--env", "CartPole-v1", "--demos", str(cartpole_demos), "--obs-features", "9",
                           *out], "obs_features 9", "at most 4")
    typo = tmp_path / "typo.yaml"
    typo.write_text("discrimnator: {reward: log_d}\n")
    fails_cleanly(capsys, ["gail", "--env", "CartPole-v1", "--demos", str(cartpole_demos), "--config", str(typo),
                           *out], "discrimnator")
    for text, words in (("discriminator: {hiden_sizes: [64]}", ("hiden_sizes",)),
                        ("discriminator: {activation: relu6}", ("activation", "relu6")),
                        ("discriminator: {reward: foo}", ("reward", "foo")),
                        ("discriminator: 5", ("discriminator", "mapping")),
                        ("discriminator: {obs_features: 0}", ("obs_features", "positive")),
                        ("discriminator: {obs_features: 5}", ("obs_features", "4 observation features"))):
        typo.write_text(text + "\n")
        fails_cleanly(capsys, ["gail", "--env", "CartPole-v1", "--demos", str(cartpole_demos), "--config",
                               str(typo), *out], *words)
    typo.write_text("val_fraction: 1\n")
    fails_cleanly(capsys, ["bc", "--env", "CartPole-v1", "--demos", str(cartpole_demos), "--config", str(typo), *out],
                  "val_fraction")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # nothing half-made


def test_bad_policies_are_one_line_errors(capsys, tmp_path, cartpole_model):
    out = ["--out", str(tmp_path / "runs")]
    fails_cleanly(capsys, ["rollouts", "--env", "CartPole-v1", *out], "--policy")
    fails_cleanly(capsys, ["rollouts", "--env", "CartPole-v1", "--policy", str(tmp_path / "x.zip"), *out],
                  "does not exist")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    fails_cleanly(capsys, ["rollouts", "--env", "CartPole-v1", "--policy", str(bad), *out], "SB3 model")
    fails_cleanly(capsys, ["rollouts", "--env", "Pendulum-v1", "--policy", str(cartpole_model), *out],
                  "Pendulum-v1", "policy")
    fails_cleanly(capsys, ["rollouts", "--env", "CartPole-v1", "--policy", str(tmp_path), *out], "model.zip")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    fails_cleanly(capsys, ["rollouts", "--env", "CartPole-v1", "--policy", str(cartpole_model), "--out",
                           str(blocker / "demos.npz")], "cannot write", str(blocker))
    assert not (tmp_path / "runs").exists()  # nothing half-made


def test_quick_pipeline_writes_run_directories_and_resumes(capsys, tmp_path, monkeypatch):
    """Tiny budgets: every command runs, writes its run directory and says where results went."""
    monkeypatch.chdir(tmp_path)  # rollouts --out FILE.npz keeps its run record under ./runs
    runs = tmp_path / "runs"
    cfg = tmp_path / "small.yaml"
    cfg.write_text("n_envs: 2\ncheckpoint_every: 500\nalgo_kwargs: {trpo: {n_steps: 250, batch_size: 500}}\n")
    out = succeeds(capsys, ["expert", "--env", "CartPole-v1", "--steps", "512", "--out", str(runs)])
    assert "deterministic return" in out and "results:" in out
    expert_dir = next(runs.glob("expert-CartPole-v1-s0-*"))
    summary = json.loads((expert_dir / "summary.json").read_text())
    assert summary["eval_episodes"] == 10 and summary["random_return_mean"] > 0
    assert summary["target_return"] == 500 and summary["meets_target"] in (True, False)
    assert (expert_dir / "model.zip").is_file()

    demos = tmp_path / "demos.npz"
    out = succeeds(capsys, ["rollouts", "--policy", str(expert_dir), "--env", "CartPole-v1", "--episodes", "3",
                            "--out", str(demos)])
    assert f"demos: {demos}" in out and demos.is_file()
    assert len(list((tmp_path / "runs").glob("rollouts-CartPole-v1-s0-*/summary.json"))) == 1
    rollouts_dir = next((tmp_path / "runs").glob("rollouts-CartPole-v1-s0-*"))
    out = succeeds(capsys, ["rollouts", "--resume", str(rollouts_dir)])  # its own policy, env and demos file
    assert f"demos: {demos}" in out
    with np.load(demos, allow_pickle=False) as raw:
        assert len(raw["episode_starts"]) == 3 and str(raw["env_id"]) == "CartPole-v1"

    out = succeeds(capsys, ["gail", "--env", "CartPole-v1", "--demos", str(demos), "--trajectories", "2",
                            "--steps", "500", "--config", str(cfg), "--out", str(runs)])
    assert "normalised return" in out and "results:" in out
    gail_dir = next(runs.glob("gail-CartPole-v1-s0-*"))
    summary = json.loads((gail_dir / "summary.json").read_text())
    for key in ("eval_return_mean", "random_return_mean", "expert_return_mean", "normalised_return"):
        assert key in summary
    first_two = load_demos(demos).first_episodes(2).subsample(10, rng_stream(0, "expert_subsample"))[0]
    assert summary["trajectories"] == 2 and summary["expert_pairs"] == len(first_two)
    config = json.loads((gail_dir / "config.json").read_text())
    assert config["policy_kwargs"]["features_extractor_class"].endswith(":ObsNormExtractor")
    assert "gail/disc_accuracy" in (gail_dir / "progress.csv").read_text().splitlines()[0]
    # Resume extends the run (discriminator and policy restored from the checkpoint).
    out = succeeds(capsys, ["gail", "--env", "CartPole-v1", "--demos", str(demos), "--resume", str(gail_dir),
                            "--steps", "1000"])
    assert json.loads((gail_dir / "summary.json").read_text())["steps"] >= 1000
    with open(gail_dir / "progress.csv") as f:
        rounds = [float(row["gail/rounds"]) for row in csv.DictReader(f) if row.get("gail/rounds")]
    assert rounds[-1] == 2  # one round of 500 steps before the resume and one after: the count was restored

    out = succeeds(capsys, ["bc", "--env", "CartPole-v1", "--demos", str(demos), "--epochs", "3", "--out", str(runs)])
    bc_dir = next(runs.glob("bc-CartPole-v1-s0-*"))
    assert str(bc_dir) in out and (bc_dir / "model.zip").is_file()
    assert json.loads((bc_dir / "summary.json").read_text())["epochs"] == 3
    out = succeeds(capsys, ["bc", "--env", "CartPole-v1", "--demos", str(demos), "--resume", str(bc_dir),
                            "--epochs", "5"])
    assert json.loads((bc_dir / "summary.json").read_text())["epochs"] == 5
    # A cloned policy is an ordinary SB3 zip: it can be rolled out like the expert.
    out = succeeds(capsys, ["rollouts", "--policy", str(bc_dir), "--env", "CartPole-v1", "--episodes", "1",
                            "--out", str(runs)])
    assert "recorded 1 episodes" in out


def test_expert_stops_once_it_reaches_stop_return(capsys, tmp_path):
    """--stop-return: SB3's EvalCallback with StopTrainingOnRewardThreshold ends training at the first check whose
    deterministic return reaches it; resuming such a run trains again only for a higher --stop-return."""
    runs = tmp_path / "runs"
    cfg = tmp_path / "stop.yaml"
    cfg.write_text("stop_check_every: 256\neval_episodes: 2\n")  # CartPole: 8 envs, rollouts of 256 steps
    base = ["expert", "--env", "CartPole-v1", "--config", str(cfg), "--out", str(runs)]
    # Any CartPole policy lasts more than 5 steps: the first check (step 256) stops a 50k-step budget.
    out = succeeds(capsys, [*base, "--steps", "50000", "--stop-return", "5", "--seed", "1"])
    assert "stopped at step 256 on reaching stop_return 5" in out
    run = next(runs.glob("expert-CartPole-v1-s1-*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps"] == 256 and summary["stop_check_best_return"] >= 5
    assert (run / "model.zip").is_file()
    # Resumed with the same threshold it has nothing left to do; with a higher one it trains on.
    succeeds(capsys, ["expert", "--resume", str(run), "--steps", "60000"])
    assert json.loads((run / "summary.json").read_text())["steps"] == 256
    succeeds(capsys, ["expert", "--resume", str(run), "--steps", "1024", "--stop-return", "1e9"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 1024 and not summary["stopped_early"] and summary["stop_return"] == 1e9
    # An unreachable threshold leaves the budget as it was.
    succeeds(capsys, [*base, "--steps", "512", "--stop-return", "1e9", "--seed", "2"])
    summary = json.loads(next(runs.glob("expert-CartPole-v1-s2-*/summary.json")).read_text())
    assert summary["steps"] == 512 and not summary["stopped_early"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("stop_check_every: 0\n")
    fails_cleanly(capsys, ["expert", "--env", "CartPole-v1", "--stop-return", "5", "--config", str(bad),
                           "--out", str(tmp_path / "bad_runs")], "stop_check_every", "positive")


@pytest.mark.slow
def test_commands_work_on_mujoco(capsys, tmp_path, monkeypatch):
    """Hopper-v5 with tiny budgets: SAC expert, rollouts, GAIL (the rlgen preset: PPO) and BC all run and report."""
    monkeypatch.chdir(tmp_path)
    pytest.importorskip("mujoco")
    runs = tmp_path / "runs"
    succeeds(capsys, ["expert", "--env", "Hopper-v5", "--steps", "300", "--out", str(runs)])
    expert_dir = next(runs.glob("expert-Hopper-v5-s0-*"))
    assert json.loads((expert_dir / "config.json").read_text())["algo"] == "sac"
    demos = tmp_path / "hopper.npz"
    succeeds(capsys, ["rollouts", "--policy", str(expert_dir / "model.zip"), "--env", "Hopper-v5", "--episodes", "4",
                      "--out", str(demos)])
    cfg = tmp_path / "small.yaml"
    cfg.write_text("n_envs: 1\neval_episodes: 2\nalgo_kwargs: {ppo: {n_steps: 256, batch_size: 256, n_epochs: 1}}\n")
    out = succeeds(capsys, ["gail", "--env", "Hopper-v5", "--demos", str(demos), "--trajectories", "4",
                            "--steps", "512", "--config", str(cfg), "--out", str(runs)])
    assert "gail on Hopper-v5" in out
    gail_dir = next(runs.glob("gail-Hopper-v5-s0-*"))
    config = json.loads((gail_dir / "config.json").read_text())
    start_count = config["policy_kwargs"]["features_extractor_kwargs"]["count"]
    assert config["preset"] == "rlgen" and config["algo"] == "ppo" and config["policy_obs_norm"] == "running"
    model = PPO.load(gail_dir / "model.zip")
    (norm,) = [m.norm for m in model.policy.modules() if isinstance(m, RunningObsNormExtractor)]
    assert start_count == config["expert_pairs"] and int(norm.count) == start_count + 256  # + the first rollout
    out = succeeds(capsys, ["bc", "--env", "Hopper-v5", "--demos", str(demos), "--epochs", "2", "--out", str(runs)])
    assert "bc on Hopper-v5" in out


@pytest.mark.slow
def test_cartpole_pipeline_end_to_end(tmp_path):
    """expert (PPO, 40k steps) -> 10 demos -> GAIL (PPO, 4 trajectories, 60k steps) and BC -> evaluation over 10
    deterministic episodes against a measured random policy: GAIL reaches most of the expert's return."""
    runs = tmp_path / "runs"
    out = rlgen("expert", "--env", "CartPole-v1", "--steps", "40000", "--out", str(runs))
    assert out.returncode == 0, out.stderr[-3000:]
    expert_dir = next(runs.glob("expert-CartPole-v1-s0-*"))
    expert = json.loads((expert_dir / "summary.json").read_text())
    assert expert["eval_return_mean"] >= 450, expert

    demos = tmp_path / "demos.npz"
    out = rlgen("rollouts", "--policy", str(expert_dir), "--env", "CartPole-v1", "--episodes", "10",
                "--out", str(demos), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]

    cfg = tmp_path / "gail.yaml"
    cfg.write_text("algo: ppo\nn_envs: 8\n"
                   "algo_kwargs: {ppo: {n_steps: 256, batch_size: 256, n_epochs: 10, gamma: 0.99, gae_lambda: 0.95,"
                   " learning_rate: 0.001, clip_range: 0.2, ent_coef: 0.0}}\n"
                   "discriminator: {updates_per_round: 5, learning_rate: 0.003}\n")
    out = rlgen("gail", "--env", "CartPole-v1", "--demos", str(demos), "--trajectories", "4", "--steps", "60000",
                "--config", str(cfg), "--out", str(runs))
    assert out.returncode == 0, out.stderr[-3000:]
    gail = json.loads((next(runs.glob("gail-CartPole-v1-s0-*")) / "summary.json").read_text())
    assert gail["eval_episodes"] >= 10 and 5 < gail["random_return_mean"] < 100  # measured, not assumed
    assert gail["expert_return_mean"] >= 450
    assert gail["normalised_return"] >= 0.8, gail

    out = rlgen("bc", "--env", "CartPole-v1", "--demos", str(demos), "--trajectories", "4", "--out", str(runs))
    assert out.returncode == 0, out.stderr[-3000:]
    bc = json.loads((next(runs.glob("bc-CartPole-v1-s0-*")) / "summary.json").read_text())
    assert bc["normalised_return"] is not None and bc["eval_episodes"] >= 10


def test_gail_and_bc_options_have_one_default():
    """GAIL's and BehaviorCloning's keyword defaults are their sections'; imitation.yaml sets one only to differ."""
    from rlgen.agents.reward_sources import discriminator_defaults
    from rlgen.common.config import packaged_config

    section = packaged_config("imitation.yaml")["gail"]
    defaults = discriminator_defaults()
    for where, entry in [("defaults", section["defaults"]), *section["presets"].items(), *section["tasks"].items()]:
        options = entry.get("discriminator", {})
        assert set(options) <= set(defaults), (where, options)
        assert not [k for k, v in options.items() if v == defaults[k]], f"{where} restates GAIL's defaults: {options}"
    from rlgen.agents.bc import BehaviorCloning
    from rlgen.common.config import keyword_defaults

    bc = keyword_defaults(BehaviorCloning)
    restated = [k for k, v in packaged_config("imitation.yaml")["bc"]["defaults"].items() if k in bc and v == bc[k]]
    assert restated == ["seed"], restated  # (the run's seed, shared by every command's section)
