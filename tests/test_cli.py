"""The command line: help, one-line errors with exit code 2, run directories, checkpoints and resume."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlgen.cli import COMMANDS, main
from tests.cli_helpers import ENV, fails_cleanly, rlgen, succeeds, tensorboard_steps


def test_help_lists_every_command_with_the_shared_options(capsys):
    out = rlgen("--help")  # once through a real subprocess
    assert out.returncode == 0
    for command in COMMANDS:
        assert command.name in out.stdout
        with pytest.raises(SystemExit) as exit_info:
            main([command.name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for option in ("--seed", "--device", "--out", "--resume", "--config"):
            assert option in text, f"{command.name} --help lacks {option}"


@pytest.mark.parametrize("command", ["gan", "infogan", "vae", "pixelcnn", "pixelrnn"])
def test_image_command_help_quotes_its_own_defaults(capsys, command):
    """The shared trainer flags state the defaults of the command at hand (PixelRNN's Adam is not the GAN's)."""
    from rlgen.vision.config import packaged_defaults

    defaults = packaged_defaults(command)[0]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert f"Adam learning rate (default {defaults['lr']:g})" in text
    assert f"Adam beta1 (default {defaults['beta1']:g})" in text
    assert f"images per grid (default {defaults['n_samples']})" in text


def test_console_script_is_the_same_cli():
    exe = shutil.which("rlgen")
    if exe is None:
        pytest.skip("the rlgen console script is not installed (pip install -e .)")
    a = subprocess.run([exe, "--help"], check=False, capture_output=True, text=True, env=ENV)
    assert a.returncode == 0 and a.stdout == rlgen("--help").stdout


def test_resuming_another_commands_run_says_so(capsys, tmp_path):
    run = tmp_path / "gan-mnist-s0-20261206-000000"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "gan", "dataset": "mnist", "seed": 0}))
    for argv in (["ppo", "--resume", str(run)], ["vime", "--env", "CartPole-v1", "--resume", str(run)],
                 ["pixelcnn", "--resume", str(run)]):
        fails_cleanly(capsys, argv, "is a run of 'rlgen gan'", f"rlgen gan --resume {run}")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # nothing written


@pytest.mark.parametrize("text,words", [
    ("algo_kwargs: {ppo: {foo: 1}}", ["foo", "unknown", "PPO takes"]),
    ("algo_kwargs: {ppo: {n_steps: many}}", ["n_steps", "an integer", "'many'"]),
    ("algo_kwargs: {ppo: {gamma: .nan}}", ["gamma", "finite"]),
    ("algo_kwargs: {ppo: {normalize_advantage: 1}}", ["normalize_advantage", "true or false"]),
    # the policy's options, checked as well before the run directory (they used to fail in SB3's constructor)
    ("policy_kwargs: {net_arch: [32], bogus: 1}", ["policy_kwargs", "bogus", "ActorCriticPolicy takes"]),
    ("policy_kwargs: {net_arch: abc}", ["net_arch", "layer sizes", "'abc'"]),
    ("policy_kwargs: {net_arch: {pi: [32, -1]}}", ["net_arch", "layer sizes"]),
    ("policy_kwargs: {activation_fn: tanhh}", ["activation_fn", "'tanhh'"]),
])
def test_bad_algo_kwargs_are_one_line_before_any_run_directory(capsys, tmp_path, text, words):
    config = tmp_path / "bad.yaml"
    config.write_text(text + "\n")
    out = tmp_path / "runs"
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--config", str(config), "--out", str(out)], *words)
    fails_cleanly(capsys, ["expert", "--env", "CartPole-v1", "--config", str(config), "--out", str(out)], *words)
    assert not out.exists()


@pytest.mark.parametrize("argv,words", [
    (["nonsense"], ["invalid choice", "nonsense"]),
    (["ppo", "--env", "NoSuchEnv-v9", "--steps", "10"], ["NoSuchEnv-v9"]),
    (["ppo", "--env", "CartPole-v1", "--steps", "0"], ["--steps", "positive"]),
    (["vime", "--env", "CartPole-v1", "--steps", "-5"], ["--steps", "positive"]),
    (["ppo", "--env", "CartPole-v1", "--config", "/no/such/file.yaml"], ["/no/such/file.yaml", "does not exist"]),
    (["ppo", "--env", "CartPole-v1", "--resume", "/no/such/run"], ["/no/such/run"]),
    (["ppo", "--resume", "/no/such/run"], ["/no/such/run", "does not exist"]),  # no --env to fall back on
    (["vae", "--resume", "/no/such/run"], ["/no/such/run", "does not exist"]),
    (["ppo", "--resume", "/"], ["--resume /", "not an rlgen run directory"]),
    (["ppo", "--env", "CartPole-v1", "--config", "/"], ["config file /", "is a directory"]),
    # issue #24's bad numbers: NaN, infinities, zero learning rates and absurd budgets are refused by the parser
    (["gan", "--lr", "nan"], ["--lr", "finite"]),
    (["vae", "--lr", "0"], ["--lr", "> 0"]),
    (["infogan", "--g-lr", "inf"], ["--g-lr", "finite"]),
    (["vime", "--env", "CartPole-v1", "--eta", "nan"], ["--eta", "finite"]),
    (["vime", "--env", "CartPole-v1", "--eta", "inf"], ["--eta", "finite"]),
    (["expert", "--env", "CartPole-v1", "--stop-return", "nan"], ["--stop-return", "finite"]),
    (["ppo", "--env", "CartPole-v1", "--steps", "99999999999999999999"], ["--steps", "up to"]),
    (["pixelcnn", "--max-minutes", "-1"], ["--max-minutes", "> 0"]),
    # a misspelt option: the command's own message and help, with the nearest option; no abbreviations taken
    (["vime", "--stpes", "100"], ["rlgen vime: error", "--stpes", "did you mean --steps?", "'rlgen vime --help'"]),
    (["ppo", "--env", "CartPole-v1", "--step", "10"], ["unrecognized", "did you mean --steps?"]),
    (["ppo"], ["no --env given", "e.g. --env SparseMountainCar"]),
    # seeds numpy and gymnasium can take, with room for the offsets runs add
    (["ppo", "--env", "CartPole-v1", "--seed", "-1"], ["--seed", ">= 0"]),
    (["gan", "--seed", "99999999999"], ["--seed", "between 0 and 2,147,483,647"]),
    # a split the dataset does not have, named with its option (was the loader's "unknown split" alone)
    (["vae", "--dataset", "mnist", "--eval-split", "valid"], ["--eval-split 'valid'", "mnist has the splits train, test",
                                                             "--dataset binarized_mnist"]),
    (["pixelcnn", "--dataset", "mnist", "--train-split", "train+valid"], ["--train-split 'train+valid'", "mnist has"]),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, words):
    fails_cleanly(capsys, argv + ["--out", str(tmp_path)] if argv[0] in ("ppo", "vime", "expert") else argv, *words)
    assert not any(tmp_path.iterdir())  # nothing half-made


@pytest.mark.parametrize("argv,text,words", [
    (["gan", "--dataset", "mnist"], "lr: .nan", ["lr", "finite"]),
    (["vae", "--dataset", "mnist"], "lr: 0", ["lr", "> 0"]),
    (["ssgan", "--dataset", "mnist"], "labels: -100", ["labels", "positive"]),
    (["ssgan", "--dataset", "mnist"], "d_hidden: 1000", ["d_hidden", "a list"]),
    (["pixelrnn", "--dataset", "mnist"], "variant: lstm", ["variant", "one of"]),
    (["pixelcnn", "--dataset", "mnist"], "amp: 1", ["amp", "true or false"]),
    (["ppo", "--env", "CartPole-v1"], "n_envs: 2.5", ["n_envs", "integer"]),
    (["gail", "--env", "CartPole-v1"], "vime_eta: .inf", ["vime_eta", "unknown"]),  # a flag's name, not a key
    (["bench", "smoke"], "retries: -1", ["retries", ">= 0"]),
    (["vime", "--env", "CartPole-v1"], "vime: {etaa: 0.1}", ["vime section", "etaa", "known options"]),
    (["vime", "--env", "CartPole-v1"], "vime: {eta: -1}", ["vime.eta", ">= 0", "fix the file"]),
])
def test_a_config_files_values_are_checked_as_the_flags_are(capsys, tmp_path, argv, text, words):
    config = tmp_path / "bad.yaml"
    config.write_text(text + "\n")
    out = tmp_path / "runs"
    fails_cleanly(capsys, [*argv, "--config", str(config), "--out", str(out)], *words)
    assert not out.exists()


def test_corrupt_and_misspelt_config_files(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--config", str(bad)], "could not be parsed at line 2")
    typo = tmp_path / "typo.yaml"
    typo.write_text("stepz: 100\n")
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--config", str(typo)], "stepz")
    negative = tmp_path / "negative.json"
    negative.write_text('{"steps": -3}')
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--config", str(negative)], "steps", "positive")


def test_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--steps", "10", "--out", str(blocker / "runs")],
                  "cannot write", "--out")


def test_cuda_asked_for_without_cuda(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--steps", "10", "--device", "cuda", "--out",
                           str(tmp_path)], "CUDA")
    fails_cleanly(capsys, ["bench", "smoke", "--tasks", "CartPole-v1", "--device", "cuda", "--out", str(tmp_path)],
                  "rlgen bench", "CUDA")
    assert not any(tmp_path.iterdir()), "a failed start left a run directory behind"


def test_a_config_file_for_another_command_or_a_runs_config_json_is_refused(capsys, tmp_path):
    """A file's ``command: ppo`` must not turn ``rlgen vime`` into PPO; a run's resolved config.json (with the keys
    the run derives) is not an options file: the message says how to continue that run."""
    other = tmp_path / "ppo.yaml"
    other.write_text("command: ppo\nn_envs: 2\n")
    out = tmp_path / "runs"
    fails_cleanly(capsys, ["vime", "--env", "CartPole-v1", "--config", str(other), "--out", str(out)],
                  "is for 'rlgen ppo'", f"rlgen ppo --config {other}")
    run = tmp_path / "ppo-CartPole-v1-s0-20261207-000000"
    run.mkdir()
    (run / "provenance.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"command": "ppo", "env": "CartPole-v1", "env_name": "CartPole-v1"}))
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--config", str(run / "config.json"), "--out", str(out)],
                  "resolved configuration", f"--resume {run}")
    assert not out.exists()


def test_resuming_a_run_with_another_task_is_refused(capsys, tmp_path):
    run = tmp_path / "ppo-CartPole-v1-s0-20261207-000000"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "ppo", "env": "CartPole-v1", "env_name": "CartPole-v1",
                                                 "seed": 0}))
    fails_cleanly(capsys, ["ppo", "--env", "Pendulum-v1", "--resume", str(run)], "a run on CartPole-v1",
                  "not on Pendulum-v1", "its own --env")
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]
    image_run = tmp_path / "gan-fashion-mnist-s0-20261207-000000"
    image_run.mkdir()
    (image_run / "config.json").write_text(json.dumps({"command": "gan", "dataset": "fashion-mnist", "seed": 0}))
    fails_cleanly(capsys, ["gan", "--dataset", "mnist", "--resume", str(image_run)], "not on mnist")
    # an alias of the run's dataset is its dataset: the resume goes on, to the next check (here: no data)
    fails_cleanly(capsys, ["gan", "--dataset", "fashion_mnist", "--resume", str(image_run), "--data-dir",
                           str(tmp_path)], "Fashion-MNIST train data not found")


def _steps(progress: Path) -> list[int]:
    with open(progress) as f:
        return [int(float(row["step"])) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_run_directory_and_interrupted_run_resumes(tmp_path):
    """A run killed mid-way resumes from its last checkpoint and finishes its budget; nothing is logged twice."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("n_envs: 2\ncheckpoint_every: 400\neval_episodes: 2\n"
                   "algo_kwargs: {ppo: {n_steps: 100, batch_size: 100, n_epochs: 2}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.run", "ppo", "--env", "CartPole-v1", "--steps", "1000000",
                             "--seed", "3", "--config", str(cfg), "--out", str(tmp_path / "runs")],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    latest = None
    while time.time() < deadline:
        found = list((tmp_path / "runs").glob("ppo-CartPole-v1-s3-*/checkpoints/latest.json"))
        if found and json.loads(found[0].read_text())["step"] >= 800:
            latest = found[0]
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the checkpoint on disk must be complete
    proc.wait()
    assert latest is not None, "no checkpoint was written"
    run_dir = latest.parent.parent
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 3 and config["env"] == "CartPole-v1" and config["n_envs"] == 2
    ckpt_step = json.loads(latest.read_text())["step"]
    assert any((run_dir / "tb").iterdir())

    out = rlgen("ppo", "--resume", str(run_dir), "--steps", str(ckpt_step + 600), "--env", "CartPole-v1")
    assert out.returncode == 0, out.stderr
    assert str(run_dir) in out.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] >= ckpt_step + 600
    assert (run_dir / "model.zip").is_file()
    steps = _steps(run_dir / "progress.csv")
    assert steps == sorted(set(steps)), "a step was logged twice after resuming"
    assert steps[0] < ckpt_step < steps[-1]
    tb_steps = tensorboard_steps(run_dir / "tb", "rollout/ep_rew_mean")
    assert tb_steps == sorted(set(tb_steps)) and tb_steps[-1] > ckpt_step, "TensorBoard shows a step twice"
    first, second = json.loads((run_dir / "provenance.json").read_text())["sessions"]
    assert (first["resumed"], second["resumed"]) == (False, True) and "--resume" in second["command"]
    assert first["commit"] and first["device"] and first["started"].endswith("UTC")


@pytest.mark.slow
def test_terminated_run_checkpoints_where_it_stopped(tmp_path):
    """SIGTERM (as Ctrl-C) writes a checkpoint at the step reached, with no periodic checkpoint due, exits 130, and
    the run resumes from that checkpoint."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("n_envs: 2\ncheckpoint_every: 1000000000\neval_episodes: 1\n"
                   "algo_kwargs: {ppo: {n_steps: 100, batch_size: 100, n_epochs: 1}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.run", "ppo", "--env", "CartPole-v1", "--steps", "1000000",
                             "--config", str(cfg), "--out", str(tmp_path / "runs")], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    progress: list[Path] = []
    while time.time() < deadline:
        progress = list((tmp_path / "runs").glob("ppo-CartPole-v1-s0-*/progress.csv"))
        if progress and len(_steps(progress[0])) >= 3:
            break
        time.sleep(0.2)
    assert progress, "the run logged nothing"
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; continue the run with --resume" in err, err
    run_dir = progress[0].parent
    step = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
    # The steps up to the start of the rollout it was collecting: rollouts stay aligned (2 envs x 100 steps).
    assert step >= max(_steps(progress[0])) >= 600 and step % 200 == 0
    out = rlgen("ppo", "--resume", str(run_dir), "--steps", str(step + 400))
    assert out.returncode == 0, out.stderr
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == step + 400  # exactly the budget


def test_resume_rejects_corrupt_checkpoint(capsys, tmp_path):
    run = tmp_path / "runs" / "ppo-CartPole-v1-s0-x"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"command": "ppo", "seed": 0}))
    (run / "checkpoints" / "latest.json").write_text('{"step": 10, "model": "model_10.zip", "extras": "e.pt"}')
    (run / "checkpoints" / "model_10.zip").write_bytes(b"not a zip file")
    fails_cleanly(capsys, ["ppo", "--env", "CartPole-v1", "--resume", str(run), "--steps", "20"], "corrupt")


def test_resume_on_another_device(capsys, tmp_path):
    """A run started on a GPU (its config says cuda) goes on with ``--resume RUN --device cpu``, and says so."""
    import torch

    succeeds(capsys, ["ppo", "--env", "CartPole-v1", "--steps", "64", "--device", "cpu", "--out", str(tmp_path),
                      "--config", str(_tiny_ppo_config(tmp_path))])
    (run,) = tmp_path.glob("ppo-CartPole-v1-s0-*")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "device": "cuda"}))
    if not torch.cuda.is_available():
        fails_cleanly(capsys, ["ppo", "--resume", str(run), "--steps", "128"], "no CUDA device", "--device cpu")
    succeeds(capsys, ["ppo", "--resume", str(run), "--steps", "128", "--device", "cpu"])
    assert json.loads((run / "config.json").read_text())["device"] == "cpu"
    assert json.loads((run / "summary.json").read_text())["steps"] >= 128
    if not torch.cuda.is_available():  # a device this machine lacks is refused before the config is rewritten
        fails_cleanly(capsys, ["ppo", "--resume", str(run), "--steps", "192", "--device", "cuda"], "CUDA")
        assert json.loads((run / "config.json").read_text())["device"] == "cpu"


def _tiny_ppo_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("n_envs: 1\neval_episodes: 1\nalgo_kwargs: {ppo: {n_steps: 64, batch_size: 64, n_epochs: 1}}\n")
    return cfg


def test_a_budget_that_ends_inside_a_rollout_says_where_it_ends(capsys, tmp_path):
    from rlgen.cli import main

    assert main(["ppo", "--env", "CartPole-v1", "--steps", "100", "--out", str(tmp_path),
                 "--config", str(_tiny_ppo_config(tmp_path))]) == 0
    assert "rollouts of 64 steps (n_steps x n_envs): --steps 100 ends after 128" in capsys.readouterr().err
    (run,) = tmp_path.glob("ppo-CartPole-v1-s0-*")
    assert json.loads((run / "summary.json").read_text())["steps"] == 128
