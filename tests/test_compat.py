"""Run directories written by an earlier release still resume: ``tests/data/runs-6d7181b/`` holds small runs made
by commit 6d7181b (before the recipes moved from ``cli/`` into the package and before the one checkpoint scheme,
:class:`~rlgen.common.checkpoint.CheckpointFolder`), with the data they name."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.cli_helpers import succeeds

OLD_RUNS = Path(__file__).parent / "data" / "runs-6d7181b"


@pytest.fixture
def old_runs(tmp_path: Path) -> Path:
    """A copy of the old runs, their configs pointing at the copy (they were made under /tmp/oldruns)."""
    root = tmp_path / "old"
    shutil.copytree(OLD_RUNS, root)
    for config in root.glob("*/config.json"):
        config.write_text(config.read_text().replace("/tmp/oldruns", str(root)))
    return root


def steps_logged(run: Path) -> list[int]:
    with open(run / "progress.csv") as f:
        return [int(float(row["step"])) for row in csv.DictReader(f)]


def checkpoint_files(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def test_an_old_sb3_run_resumes_where_it_stopped(old_runs, capsys):
    run = old_runs / "ppo-CartPole-v1"
    succeeds(capsys, ["ppo", "--resume", str(run), "--steps", "384"])
    assert json.loads((run / "summary.json").read_text())["steps"] == 384
    assert steps_logged(run) == [128, 256, 384]  # one more rollout of 2 x 64 steps after the old 256
    assert checkpoint_files(run) == ["extras_384.pt", "latest.json", "model_384.zip"]


def test_an_old_image_model_run_resumes_where_it_stopped(old_runs, capsys):
    run = old_runs / "pixelcnn-tiny"
    succeeds(capsys, ["pixelcnn", "--resume", str(run), "--epochs", "2"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["steps"] == 8 and summary["checkpoint"] == "epoch_2.pt"
    assert "test_nats" in summary  # the model's own report, from this process's evaluation
    assert checkpoint_files(run) == ["epoch_1.pt", "epoch_2.pt", "latest.json"]  # the newest 2 are kept


def test_an_old_bc_run_resumes_where_it_stopped(old_runs, capsys):
    run = old_runs / "bc-CartPole-v1"
    succeeds(capsys, ["bc", "--resume", str(run), "--epochs", "3"])
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3
    assert checkpoint_files(run) == ["bc_3.pt", "latest.json"]
