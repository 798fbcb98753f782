"""Shared training utilities: atomic checkpoints, config precedence, run directories, CSV logging, seeding."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal

import numpy as np
import pytest
import torch

from rlgen.common.checkpoint import FILE_MODE, atomic_torch_save, atomic_write, atomic_write_json, load_torch
from rlgen.common.config import deep_merge
from rlgen.common.device import resolve_device
from rlgen.common.errors import UserError
from rlgen.common.interrupts import signals_held
from rlgen.common.logger import make_logger
from rlgen.common.options import Flag
from rlgen.common.resolve import resolve_config, resume_request, run_flags
from rlgen.common.run_dir import RunDir, open_run
from rlgen.common.seeding import set_seed


def test_atomic_write_leaves_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"w": torch.ones(3)}, path)

    def broken_write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half a checkpo")
        raise KeyboardInterrupt  # interrupted mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, broken_write)
    assert torch.equal(load_torch(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def test_atomically_written_files_get_a_plain_files_mode(tmp_path):
    """Not mkstemp's owner-only 0600: results and checkpoints are as readable as any file the user makes."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic_write_json(tmp_path / "summary.json", {"a": 1})
    assert written.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == FILE_MODE


def test_load_torch_refuses_pickled_objects_and_corrupt_files(tmp_path):
    torch.save({"obj": argparse.Namespace(a=1)}, tmp_path / "pickled.pt")  # an arbitrary pickled object
    with pytest.raises(UserError, match="corrupt"):
        load_torch(tmp_path / "pickled.pt")
    (tmp_path / "garbage.pt").write_bytes(os.urandom(64))
    with pytest.raises(UserError, match="corrupt"):
        load_torch(tmp_path / "garbage.pt")
    with pytest.raises(UserError, match="does not exist"):
        load_torch(tmp_path / "missing.pt")


def test_config_precedence_defaults_task_file_flags(tmp_path):
    defaults = {"env": None, "seed": 0, "steps": 100, "nested": {"a": 1, "b": 2}}
    tasks = {"Foo": {"steps": 200, "nested": {"a": 10}}}
    cfg = resolve_config({"env": "Foo"}, defaults, run_flags(), tasks)
    assert cfg["steps"] == 200 and cfg["nested"] == {"a": 10, "b": 2}
    f = tmp_path / "c.yaml"
    f.write_text("steps: 300\nseed: 4\nnested: {b: 20}\n")
    cfg = resolve_config({"env": "Foo", "config": str(f)}, defaults, run_flags(), tasks)
    assert (cfg["steps"], cfg["seed"], cfg["nested"]) == (300, 4, {"a": 10, "b": 20})
    cfg = resolve_config({"env": "Foo", "config": str(f), "steps": 7, "nested.b": 5}, defaults, run_flags(), tasks)
    assert cfg["steps"] == 7 and cfg["seed"] == 4 and cfg["nested"] == {"a": 10, "b": 5}  # a dotted flag: a section key


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1}}
    merged = deep_merge(base, {"a": {"c": 2}})
    assert merged == {"a": {"b": 1, "c": 2}} and base == {"a": {"b": 1}}


def test_run_directory_layout_and_resume_lookup(tmp_path):
    run = RunDir.create(tmp_path, "vime", "SparseMountainCar", 3, {"command": "vime", "seed": 3})
    assert re.fullmatch(r"vime-SparseMountainCar-s3-\d{8}-\d{6}", run.path.name)
    assert (run.path / "config.json").is_file() and (run.path / "checkpoints").is_dir()
    twin = RunDir.create(tmp_path, "vime", "SparseMountainCar", 3, {"command": "vime", "seed": 3})
    assert twin.path != run.path
    again = RunDir.open_for_resume("latest", tmp_path, "vime", "SparseMountainCar", 3)
    assert again.resumed and again.path == twin.path
    with pytest.raises(UserError, match="run of 'rlgen vime'"):
        RunDir.open_for_resume(str(run.path), tmp_path, "ppo", "SparseMountainCar", 3)
    with pytest.raises(UserError, match="no earlier run"):
        RunDir.open_for_resume("latest", tmp_path, "vime", "SparseMountainCar", 4)


def test_csv_log_appends_widens_and_truncates_on_resume(tmp_path):
    logger = make_logger(tmp_path)
    for step in (10, 20, 30):
        logger.record("a", step * 1.0)
        if step >= 20:
            logger.record("b", 1)  # a column that appears later
        logger.dump(step)
    logger = make_logger(tmp_path, resume_step=20)  # resumed from the checkpoint at step 20
    logger.record("a", 99.0)
    logger.dump(40)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["10", "20", "40"]
    assert rows[0]["b"] == "" and rows[1]["b"] == "1" and rows[2]["a"] == "99.0"
    assert any(p.name.startswith("events") for p in (tmp_path / "tb").rglob("*"))


def test_console_line_shows_watched_keys_and_any_evaluation(tmp_path, capsys):
    logger = make_logger(tmp_path, console_keys=("time/epoch", "train/loss"))
    logger.record("train/loss", 0.5)
    logger.record("train/other", 1.0)
    logger.dump(10)
    logger.record("train/loss", 0.25)
    logger.record("eval/test_error", 0.0375)
    logger.record("time/epoch", 3)
    logger.dump(20)
    logger.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rlgen: step")]
    assert lines == ["rlgen: step 10 | loss 0.5", "rlgen: step 20 | epoch 3 | loss 0.25 | test_error 0.0375"]


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError):
        resolve_device("tpu")


def test_seed_fixes_python_numpy_torch():
    def draw():
        rng = set_seed(5)
        return np.random.rand(), torch.rand(1).item(), rng.random()

    assert draw() == draw()


def test_per_task_defaults_apply_to_full_env_ids():
    from rlgen.agents.rl_config import resolve

    short = resolve("vime", {"env": "SparseHalfCheetah"})
    full = resolve("vime", {"env": "rlgen/SparseHalfCheetah-v0"})
    assert short == full and full["steps"] == 2_000_000 and full["policy_kwargs"]["net_arch"] == [64, 32]


def test_rl_commands_limit_torch_threads(tmp_path, capsys):
    """RL runs default to one intra-op thread (tiny MLPs); a config or --torch-threads raises it, also on resume
    (a run that shared the CPU can take both cores once it runs alone), without a warning."""
    from rlgen.cli import main

    cfg = tmp_path / "threads.yaml"
    cfg.write_text("torch_threads: 2\nn_envs: 2\neval_episodes: 1\n")
    try:
        torch.set_num_threads(3)
        assert main(["ppo", "--env", "CartPole-v1", "--steps", "64", "--out", str(tmp_path / "a")]) == 0
        assert torch.get_num_threads() == 1
        assert main(["ppo", "--env", "CartPole-v1", "--steps", "64", "--config", str(cfg), "--out", str(tmp_path)]) == 0
        assert torch.get_num_threads() == 2
        (run,) = (tmp_path / "a").iterdir()
        assert main(["ppo", "--resume", str(run), "--steps", "128", "--torch-threads", "3"]) == 0
        assert torch.get_num_threads() == 3 and json.loads((run / "config.json").read_text())["torch_threads"] == 3
        assert "ignored" not in capsys.readouterr().err  # (rlgen's log handler writes to stderr)
    finally:
        torch.set_num_threads(1)


def test_episode_info_logger_logs_the_mean_of_each_episodes_last_info():
    """``episode_info: [torso_com_x]``: rollout/ep_torso_com_x_mean is the mean of the value at each episode's end."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList

    from rlgen.common.sb3_training import EpisodeInfoLogger, make_vec_env_for

    class Spy(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.ends: list[float] = []
            self.logged: list[float] = []

        def _on_step(self) -> bool:
            for done, info in zip(self.locals["dones"], self.locals["infos"]):
                if done:
                    self.ends.append(info["torso_com_x"])
            return True

        def _on_rollout_end(self) -> None:  # runs after EpisodeInfoLogger's
            self.logged.append(self.logger.name_to_value["rollout/ep_torso_com_x_mean"])

    venv = make_vec_env_for("rlgen/SparseHalfCheetah-v0", 2, seed=0, episode_info=["torso_com_x"])
    model = PPO("MlpPolicy", venv, n_steps=500, batch_size=500, n_epochs=1, seed=0)
    spy = Spy()
    model.learn(2000, callback=CallbackList([EpisodeInfoLogger(["torso_com_x"]), spy]))
    assert len(spy.ends) == 4 and len(set(spy.ends)) == 4  # 2 rollouts of 2 envs x one 500-step episode
    np.testing.assert_allclose(spy.logged, [np.mean(spy.ends[:2]), np.mean(spy.ends)], rtol=1e-6)


def test_a_second_stop_signal_cannot_cut_the_interrupt_checkpoint_short():
    """Inside signals_held a SIGTERM (or SIGINT) is dropped; outside, the run's handler is back."""
    calls = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
        assert calls == []
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_linear_lr_schedule_falls_to_zero_over_the_whole_run_across_a_resume(tmp_path, capsys):
    """``lr_schedule: linear`` anneals learning_rate to 0 at ``steps``; a resumed run goes on along the same line."""
    from rlgen.cli import main
    from tests.cli_helpers import fails_cleanly

    cfg = tmp_path / "linear.yaml"
    cfg.write_text("lr_schedule: linear\nn_envs: 2\neval_episodes: 1\n"
                   "algo_kwargs: {ppo: {n_steps: 64, batch_size: 64, learning_rate: 0.001}}\n")
    base = ["ppo", "--env", "CartPole-v1", "--config", str(cfg), "--out", str(tmp_path)]
    assert main([*base, "--steps", "512"]) == 0
    run = next(tmp_path.glob("ppo-CartPole-v1-s0-*"))
    assert main(["ppo", "--resume", str(run), "--steps", "1024"]) == 0
    with open(run / "progress.csv") as f:
        rows = [(int(r["step"]), float(r["train/learning_rate"])) for r in csv.DictReader(f)
                if r.get("train/learning_rate")]
    # SB3 logs an update's rate in the next rollout's row (row s: the update on the rollout that ended at s - 128):
    # 1e-3 * (1 - (s - 128) / steps), where steps was 512 before the resume and 1024 after it (a longer budget
    # stretches the rest of the line). The first row of each process has no update yet.
    assert [s for s, _ in rows] == [256, 384, 512, 768, 896, 1024]
    for step, lr in rows:
        total = 512 if step <= 512 else 1024
        assert lr == pytest.approx(1e-3 * (1 - (step - 128) / total)), (step, lr)

    cfg.write_text("lr_schedule: cosine\n")
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--config", str(cfg), "--out", str(tmp_path / "bad")],
                  "lr_schedule", "linear")
    assert not (tmp_path / "bad").exists()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_nothing_to_resume(tmp_path, capsys, monkeypatch):
    """Removed when it logged nothing; marked failed.json (logs kept) when it did; a bare --resume skips both."""
    from rlgen.cli import main
    from rlgen.common import sb3_training

    def fail_at_start(*args, **kwargs):
        raise UserError("boom before anything")

    base = ["ppo", "--env", "CartPole-v1", "--steps", "64", "--out", str(tmp_path)]
    monkeypatch.setattr(sb3_training, "make_logger", fail_at_start)
    assert main(base) == 2
    assert not list(tmp_path.glob("ppo-*"))  # removed

    def fail_on_the_second_rollout(self):
        if self.model.num_timesteps > 0:
            raise RuntimeError("boom after training")

    monkeypatch.undo()
    monkeypatch.setattr(sb3_training.ProgressAndCheckpoint, "_on_rollout_start", fail_on_the_second_rollout)
    cfg = tmp_path / "small.yaml"
    cfg.write_text("checkpoint_every: 0\nn_envs: 2\nalgo_kwargs: {ppo: {n_steps: 64, batch_size: 64}}\n")
    with pytest.raises(RuntimeError):  # a bug's traceback still propagates
        main([*base, "--steps", "512", "--config", str(cfg)])
    monkeypatch.undo()
    (run,) = tmp_path.glob("ppo-*")
    assert (run / "progress.csv").is_file() and "boom after training" in (run / "failed.json").read_text()
    capsys.readouterr()
    from tests.cli_helpers import fails_cleanly

    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--resume", "--out", str(tmp_path)], "found no earlier run")


def test_checkpoint_folder_keeps_the_newest_and_falls_back_past_a_deleted_one(tmp_path):
    from rlgen.common.checkpoint import CheckpointFolder

    folder = CheckpointFolder(tmp_path, ("a_*.bin", "b_*.bin"), keep=2)
    assert folder.latest() is None

    def save(step: int) -> dict:
        return folder.save({"a": (f"a_{step}.bin", lambda tmp: open(tmp, "w").write("a")),
                            "b": (f"b_{step}.bin", lambda tmp: open(tmp, "w").write("b"))}, step=step)

    for step in (1, 2, 3):
        save(step)
    (tmp_path / "a_9.bin").write_text("left by a save cut short")
    save(4)
    assert sorted(p.name for p in tmp_path.glob("*.bin")) == ["a_3.bin", "a_4.bin", "b_3.bin", "b_4.bin"]
    assert folder.latest() == {"step": 4, "a": "a_4.bin", "b": "b_4.bin"}
    (tmp_path / "b_4.bin").unlink()  # a damaged newest checkpoint, deleted: the one before is in force
    assert folder.latest() == {"step": 3, "a": "a_3.bin", "b": "b_3.bin"}

    def broken(tmp: str) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):  # an interrupted save leaves the index as it was
        folder.save({"a": ("a_5.bin", broken)}, step=5)
    assert folder.latest()["step"] == 3


def test_resuming_drops_the_tensorboard_events_past_the_checkpoint(tmp_path):
    """Events logged after the checkpoint a run resumes from go, from TensorBoard as from progress.csv."""
    from tests.cli_helpers import tensorboard_steps

    logger = make_logger(tmp_path)
    for step in range(1, 6):
        logger.record("train/x", float(step))
        logger.dump(step)
    logger.close()  # (a killed run may have flushed these or not: the resume must not care)
    logger = make_logger(tmp_path, resume_step=3)
    for step in (4, 5, 6):
        logger.record("train/x", float(step))
        logger.dump(step)
    logger.close()
    assert tensorboard_steps(tmp_path / "tb", "train/x") == [1, 2, 3, 4, 5, 6]
    with open(tmp_path / "progress.csv") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]


def test_options_typed_with_resume_that_differ_from_the_runs_are_ignored_with_a_warning(tmp_path, monkeypatch,
                                                                                        caplog):
    """Typing the run's whole command line again with --resume is fine (a relative path, a tuple against JSON's
    list, 1 against 1.0 say the same); a value that differs is ignored, and the user is told which and why."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demos.npz").touch()
    saved = {"command": "test", "seed": 0, "device": "cpu", "steps": 10, "hidden": 4, "sizes": [64, 64],
             "lr": 1.0, "demos": str(tmp_path / "demos.npz"), "section": {"weight": 2.0}}
    run = RunDir.create(tmp_path / "runs", "test", "task", 0, saved)
    flags = {"resume": str(run.path), "steps": 20, "hidden": 8, "sizes": (64, 64), "lr": 1, "demos": "demos.npz",
             "section.weight": 3.0, "out": "elsewhere"}
    with caplog.at_level("WARNING", logger="rlgen"):
        resumed = open_run({**saved, "hidden": 8, "steps": 20}, "task", resume_request(flags))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2 and warned[0].startswith("--hidden 8 is ignored: a resumed run keeps its saved 4")
    assert warned[1].startswith("--weight 3.0 is ignored")
    assert resumed.config["hidden"] == 4 and resumed.config["steps"] == 20  # the budget may change


def test_a_config_file_given_with_resume_is_read_like_its_flags(tmp_path, caplog):
    """``--resume RUN --config FILE``: the file's budget applies (flags win over it), and each of its other values
    that differs from the run's is ignored with a warning naming the file, not silently."""
    saved = {"command": "test", "seed": 0, "device": "cpu", "steps": 10, "hidden": 4, "section": {"weight": 2.0}}
    run = RunDir.create(tmp_path / "runs", "test", "task", 0, saved)
    file = tmp_path / "more.yaml"
    file.write_text("steps: 3e1\nhidden: 4\nsection: {weight: 5.0}\nunflagged: {a: 1}\n")
    declared = [Flag("steps", "", kind=int, minimum=1), Flag("hidden", "", kind=int), Flag("section.weight", "",
                                                                                            kind=float)]
    with caplog.at_level("WARNING", logger="rlgen"):
        resumed = open_run(saved, "task", resume_request({"resume": str(run.path), "config": str(file)}, declared))
    (warned,) = [r.getMessage() for r in caplog.records]
    assert warned.startswith(f"section.weight: 5.0 in {file} is ignored: a resumed run keeps its saved 2.0")
    assert resumed.config["steps"] == 30 and resumed.config["section"] == {"weight": 2.0}  # 3e1: YAML's text, read
    again = open_run(saved, "task", resume_request({"resume": str(run.path), "config": str(file), "steps": 40},
                                                   declared))
    assert again.config["steps"] == 40
