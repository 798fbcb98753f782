"""``rlgen bench``: statistics on known inputs, suite files, a tiny suite end to end on the local backend,
resume, retries of failed and killed jobs, and the Ray backend on a two-node cluster on loopback."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlgen.bench import aggregate as agg
from rlgen.bench.aggregate import Sample, Stats
from rlgen.bench.execute import run_job
from rlgen.bench.runner import LocalBackend, Runner
from rlgen.bench.state import DONE, RUNNING, StateFile
from rlgen.bench.suite import available_suites, expand, load_suite, parse_seeds
from rlgen.cli import COMMANDS, main
from rlgen.common.errors import UserError

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY_TRPO = {"steps": 2000, "n_envs": 2}  # two rollouts of 2 x 500 steps: a few seconds


def bench(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 240):
    return subprocess.run([sys.executable, "-m", "rlgen.run", "bench", *args], check=False, capture_output=True,
                          text=True, cwd=cwd, env=env or ENV, timeout=timeout)


def write_suite(path: Path, cells: list[dict], name: str = "tiny", **extra) -> Path:
    path.write_text(yaml.safe_dump({"name": name, "description": "a test suite", **extra, "cells": cells}))
    return path


def jobs_json(suite_dir: Path) -> dict:
    return json.loads((suite_dir / "jobs.json").read_text())["jobs"]


# ------------------------------------------------------------------------------------------------ statistics
def test_mean_std_iqm_are_exact():
    s = Stats.of([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4 and s.mean == 2.5 and s.iqm == 2.5
    assert s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert agg.iqm([1, 2, 3, 4, 5, 6, 7, 100]) == 4.5  # drops 1, 2 and 7, 100
    assert agg.iqm([10, 1, 2, 3, -50]) == 2.0  # n=5: drops one at each end
    assert agg.iqm([3.0]) == 3.0
    one = Stats.of([7.0])
    assert (one.mean, one.std, one.ci_low, one.ci_high) == (7.0, 0.0, 7.0, 7.0)
    empty = Stats.of([])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert Stats.of([1.0, float("nan"), 3.0]).n == 2  # a NaN score is not a seed


def test_bootstrap_ci_contains_the_mean_narrows_with_seeds_and_is_reproducible():
    rng = np.random.default_rng(1)
    few, many = rng.normal(10, 2, size=5), rng.normal(10, 2, size=80)
    lo5, hi5 = agg.bootstrap_ci(few)
    lo80, hi80 = agg.bootstrap_ci(many)
    assert lo5 <= few.mean() <= hi5 and lo80 <= many.mean() <= hi80
    assert hi80 - lo80 < (hi5 - lo5) / 2
    assert agg.bootstrap_ci(few) == (lo5, hi5)  # fixed seed
    lo, hi = agg.bootstrap_ci(few, "iqm")
    assert lo <= agg.iqm(few) <= hi
    assert agg.bootstrap_ci([4.0, 4.0, 4.0]) == (4.0, 4.0)
    # rliable's stratified interval over tasks contains the pooled IQM
    groups = [rng.normal(0.5, 0.1, 5), rng.normal(0.8, 0.1, 5), rng.normal(0.2, 0.1, 5)]
    lo, hi = agg.stratified_bootstrap_ci(groups, "iqm")
    assert lo <= agg.iqm(np.concatenate(groups)) <= hi


def test_success_rate_and_steps_to_first_reward():
    assert agg.success_rate([True, False, True, None]) == pytest.approx(2 / 3)
    assert math.isnan(agg.success_rate([None]))
    assert agg.steps_to_first_reward([100, None, 300, 200]) == 200
    assert agg.steps_to_first_reward([100, 300]) == 200
    assert math.isnan(agg.steps_to_first_reward([None, None]))


def _sample(label, task, seed, score, params=(), **kw) -> Sample:
    return Sample(label=label, task=task, params=params, seed=seed, metric="m", finished=True, score=score, **kw)


def test_cells_normalised_scores_and_overall_iqm():
    refs = {"min": {"summary": "random"}, "max": {"label": "Expert"}}
    samples = [_sample("Expert", "A", 0, 100.0, normalize=refs, summary={"random": 0.0}),
               _sample("Expert", "B", 0, 20.0, normalize=refs, summary={"random": 10.0})]
    for seed, (a, b) in enumerate([(50.0, 15.0), (100.0, 20.0), (0.0, 10.0)]):
        for task, score, rnd in (("A", a, 0.0), ("B", b, 10.0)):
            samples.append(_sample("GAIL", task, seed, score, params=(("trajectories", 4),), normalize=refs,
                                   summary={"random": rnd}))
    samples.append(Sample(label="GAIL", task="A", params=(("trajectories", 4),), seed=3, metric="m",
                          finished=False, failed=True))
    samples.append(_sample("Fixed", "A", 0, 30.0, normalize={"min": {"A": 10}, "max": 50}))
    cells = {(c.label, c.task): c for c in agg.aggregate(samples)}
    gail_a = cells[("GAIL", "A")]
    assert gail_a.score.n == 3 and gail_a.n_failed == 1 and gail_a.score.mean == pytest.approx(50.0)
    assert [s.normalised for s in gail_a.samples if s.finished] == pytest.approx([0.5, 1.0, 0.0])
    assert cells[("GAIL", "B")].normalised.mean == pytest.approx(0.5)  # (15, 20, 10) on [10, 20]
    assert cells[("Expert", "B")].normalised.mean == 1.0
    assert cells[("Fixed", "A")].normalised.mean == pytest.approx(0.5)
    overall = {o.label: o for o in agg.aggregate_normalised(list(cells.values()))}
    assert overall["GAIL"].tasks == 2 and overall["GAIL"].n == 6
    assert overall["GAIL"].iqm == pytest.approx(0.5)  # middle of [0, 0, .5, .5, 1, 1]
    assert overall["GAIL"].ci_low <= 0.5 <= overall["GAIL"].ci_high


def test_learning_curve_band_on_a_common_grid():
    a = (np.array([0, 10, 20]), np.array([0.0, 1.0, 2.0]))
    b = (np.array([0, 5, 15, 25]), np.array([2.0, 2.5, 3.5, 4.5]))  # other steps, runs longer
    grid, mean, lo, hi = agg.curve_band([a, b], points=5)
    assert grid[0] == 0 and grid[-1] == 20  # up to the shortest run, so every point averages both
    assert mean == pytest.approx((grid / 10 + 2 + grid / 10) / 2)
    assert np.all(lo <= mean + 1e-9) and np.all(mean <= hi + 1e-9)


# ------------------------------------------------------------------------------------------------ suite files
def test_grid_expansion_labels_refs_and_overrides():
    data = {"name": "g", "metric": "score", "cells": [
        {"id": "expert", "command": "expert", "env": ["A", "B"], "seeds": [0], "shared": True, "label": "Expert"},
        {"command": {"vime": {"algo": "trpo"}, "trpo": {}}, "label": {"vime": "VIME-{env}", "trpo": "TRPO"},
         "env": {"A": {"steps": 100}, "B": {"steps": 1000}}, "grid": {"eta": [0.1, 0.2]}, "seeds": 2,
         "args": {"policy": "{run:expert}/model.zip", "flag": True, "off": False, "skip": None}},
    ]}
    suite = expand(data)
    assert len(suite.jobs) == 2 + 2 * 2 * 2 * 2
    vime = [j for j in suite.jobs if j.command == "vime" and j.task == "B" and j.seed == 1 and j.params["eta"] == 0.2]
    assert len(vime) == 1 and vime[0].label == "VIME-B" and vime[0].metric == "score"
    argv = vime[0].argv({vime[0].deps[0]: "{runs}/x/run"})
    assert argv[:3] == ["vime", "--env", "B"] and argv[-2:] == ["--seed", "1"]
    assert argv[argv.index("--steps") + 1] == "1000" and argv[argv.index("--algo") + 1] == "trpo"
    assert "--flag" in argv and "--no-off" in argv and "--skip" not in argv
    assert argv[argv.index("--policy") + 1] == "{runs}/x/run/model.zip"
    assert vime[0].deps == (next(j.id for j in suite.jobs if j.command == "expert" and j.task == "B"),)
    assert "--algo" not in next(j for j in suite.jobs if j.command == "trpo").argv({suite.jobs[0].id: "r"})

    # --seeds replaces the seeds of all but shared cells; --budget-scale shrinks explicit budgets
    small = expand(data, seeds=[5], budget_scale=0.1)
    assert {j.seed for j in small.jobs if j.command == "expert"} == {0}
    assert {j.seed for j in small.jobs if j.command != "expert"} == {5}
    assert {j.args["steps"] for j in small.jobs if j.task == "B" and j.command != "expert"} == {100}
    assert any("budget" in w for w in small.warnings)  # the expert cell has no steps to scale
    # job ids change with anything that changes the run, so edited suites never reuse stale results
    assert {j.id for j in small.jobs}.isdisjoint({j.id for j in suite.jobs if j.command != "expert"})
    assert expand(data).jobs[3].id == suite.jobs[3].id


@pytest.mark.parametrize("cells,words", [
    ([{"command": "trpo", "env": "A", "seed": 1}], ["unknown key", "seed"]),
    ([{"command": "trpo", "env": "A", "args": {"out": "x"}}], ["must not set", "out"]),
    ([{"command": "trpo", "env": "A", "args": {"policy": "{run:nope}"}}], ["no cell has id", "nope"]),
    ([{"command": "trpo", "env": "A", "seeds": []}], ["seeds"]),
    ([{"command": "trpo", "env": "A", "dataset": "mnist"}], ["both"]),
    ([{"env": "A"}], ["no `command`"]),
    ([{"id": "a", "command": "x", "args": {"p": "{run:b}"}}, {"id": "b", "command": "y", "args": {"p": "{run:a}"}}],
     ["cycle"]),
])
def test_bad_suites_are_user_errors(cells, words):
    with pytest.raises(UserError) as exc:
        expand({"name": "bad", "cells": cells})
    for word in words:
        assert word in str(exc.value)


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,2,5-7") == [0, 2, 5, 6, 7]
    for bad in ("a-b", "0,-1", "-3", "0", "1001", "0,2147483648", "0-99999999"):  # a negative seed went into a job that crashed
        with pytest.raises(UserError, match="seeds from 0 to"):
            parse_seeds(bad)


def test_committed_suites():
    """Every suite parses; vime-sparse is VIME(TRPO) vs TRPO on the five sparse tasks at rl.yaml's budgets;
    smoke uses only commands that are built."""
    from rlgen.common.config import packaged_config
    from rlgen.envs import SPARSE_TASKS

    assert {"smoke", "vime-sparse", "gail", "vision"} <= set(available_suites())
    for name in available_suites():
        assert load_suite(name).jobs
    vime = load_suite("vime-sparse")
    budgets = packaged_config("rl.yaml")["tasks"]
    assert {j.task for j in vime.jobs} == set(SPARSE_TASKS)
    for job in vime.jobs:
        assert job.args["steps"] == budgets[job.task]["steps"]
        assert job.command in ("vime", "trpo") and (job.command == "trpo" or job.args["algo"] == "trpo")
    assert {j.label for j in vime.jobs} == {"VIME-TRPO", "TRPO"} and {j.seed for j in vime.jobs} == set(range(5))
    assert len(vime.jobs) == 2 * 5 * 5 and vime.jobs[0].metric == "train_return_mean_last_100"
    built = {c.name for c in COMMANDS if c.module}
    assert {j.command for j in load_suite("smoke").jobs} <= built


# ------------------------------------------------------------------------------------- local backend end to end
@pytest.mark.slow
def test_tiny_suite_end_to_end_then_resume_runs_nothing(tmp_path, capsys):
    suite = write_suite(tmp_path / "tiny.yaml", [
        {"command": "trpo", "label": "TRPO", "env": ["SparseMountainCar"], "args": TINY_TRPO, "seeds": 2}],
        metric="train_return_mean_last_100", sparse=True)
    out = bench(str(suite), "--out", str(tmp_path / "results"), "--jobs", "2")
    assert out.returncode == 0, out.stderr
    suite_dir = tmp_path / "results" / "tiny"
    with open(suite_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["label"] == "TRPO" and rows[0]["seeds"] == "2"
    assert float(rows[0]["ci_low"]) <= float(rows[0]["mean"]) <= float(rows[0]["ci_high"])
    assert rows[0]["steps_per_s"] and rows[0]["wall_clock_s"]
    md = (suite_dir / "RESULTS.md").read_text()
    for word in ("| Command | `python -m rlgen.run bench", "| Commit |", "| Device |", "| Date |", "TRPO",
                 "SparseMountainCar", "seeds that reached it", "curves.png"):
        assert word in md, word
    png = suite_dir / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    state = jobs_json(suite_dir)
    assert len(state) == 2 and all(r["status"] == "done" and r["attempts"] == 1 for r in state.values())
    assert "TRPO" in out.stdout and "results:" in out.stdout
    logs = {p: p.stat().st_mtime for p in suite_dir.glob("runs/*/stdout.log")}

    assert main(["bench", str(suite), "--out", str(tmp_path / "results"), "--jobs", "2"]) == 0  # in-process: faster
    again = capsys.readouterr()
    assert "2 of 2 jobs already finished" in again.err and "done TRPO" not in again.err
    assert all(r["attempts"] == 1 for r in jobs_json(suite_dir).values())
    assert {p: p.stat().st_mtime for p in suite_dir.glob("runs/*/stdout.log")} == logs

    assert main(["bench", str(suite), "--out", str(tmp_path / "results"), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry.count("[  done]") == 2 and "2 finished, 0 to resume from a checkpoint, 0 to run" in dry

    # A fresh checkout has the committed tables and finished/, not the git-ignored run directories: the tables
    # are remade from the kept results, and no job runs again.
    assert sorted(p.stem for p in (suite_dir / "finished").glob("*.json")) == sorted(state)
    table = (suite_dir / "results.csv").read_text()
    shutil.rmtree(suite_dir / "runs")
    (suite_dir / "results.csv").unlink()
    assert main(["bench", str(suite), "--out", str(tmp_path / "results"), "--report-only"]) == 0
    assert (suite_dir / "results.csv").read_text() == table
    assert main(["bench", str(suite), "--out", str(tmp_path / "results"), "--jobs", "2"]) == 0
    assert "2 of 2 jobs already finished" in capsys.readouterr().err
    assert not (suite_dir / "runs").exists() or not any((suite_dir / "runs").iterdir())


def test_tasks_option_selects_jobs_with_their_dependencies(tmp_path, capsys):
    out = str(tmp_path / "results")
    assert main(["bench", "smoke", "--tasks", "CartPole-v1", "--out", out, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "SparseMountainCar" not in dry and "Expert-CartPole-v1" in dry and "GAIL-CartPole-v1" in dry
    assert "suite smoke: 10 of its 14 jobs" in dry  # expert, demos, 4 GAIL and 4 BC; not the 4 VIME/TRPO jobs
    assert main(["bench", "vime-sparse", "--tasks", "SwimmerGather", "--seeds", "0,1", "--out", out, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry.count("SwimmerGather-s") == 4 and "Cheetah" not in dry
    assert main(["bench", "smoke", "--tasks", "Hopper-v5", "--out", out, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "not a task of suite smoke" in err and "CartPole-v1, SparseMountainCar" in err


@pytest.mark.slow
def test_tasks_option_runs_one_task_and_the_tables_keep_the_others(tmp_path):
    suite = write_suite(tmp_path / "tiny.yaml", [
        {"command": "trpo", "label": "TRPO", "env": ["SparseMountainCar", "SparseCartpoleSwingup"],
         "args": TINY_TRPO, "seeds": 1}], metric="train_return_mean_last_100")
    results = tmp_path / "results"
    assert bench(str(suite), "--out", str(results), "--tasks", "SparseMountainCar").returncode == 0
    assert [job_id.split("-s0-")[0] for job_id in jobs_json(results / "tiny")] == ["TRPO-SparseMountainCar"]
    md = (results / "tiny" / "RESULTS.md").read_text()
    assert "| SparseCartpoleSwingup | not run |" in md and "| SparseMountainCar |" in md
    assert "| Backend | local process pool" in md
    # A suite run in parts: the table names each part's command, not only the last one.
    assert bench(str(suite), "--out", str(results), "--tasks", "SparseCartpoleSwingup").returncode == 0
    md = (results / "tiny" / "RESULTS.md").read_text()
    command_row = next(line for line in md.splitlines() if line.startswith("| Command |"))
    assert "| Backend (the last part) | local process pool" in md
    assert "--tasks SparseMountainCar` (1 job)" in command_row and "--tasks SparseCartpoleSwingup` (1 job)" in command_row


@pytest.mark.slow
def test_failing_job_is_reported_and_retried(tmp_path):
    suite = write_suite(tmp_path / "bad.yaml", [
        {"command": "trpo", "label": "Broken", "env": ["NoSuchEnv-v0"], "args": TINY_TRPO, "seeds": [0]}], name="bad")
    out = bench(str(suite), "--out", str(tmp_path / "results"), "--retries", "1")
    assert out.returncode == 1
    assert "FAILED" in out.stderr and "NoSuchEnv-v0" in out.stderr and "Traceback" not in out.stderr
    (record,) = jobs_json(tmp_path / "results" / "bad").values()
    assert record["status"] == "failed" and record["attempts"] == 2 and len(record["history"]) == 2
    assert record["returncode"] == 2 and "NoSuchEnv-v0" in record["error"] and record["stderr_tail"]
    md = (tmp_path / "results" / "bad" / "RESULTS.md").read_text()
    assert "## Failed jobs" in md and "NoSuchEnv-v0" in md


def test_unknown_command_fails_with_the_clis_one_line_message(tmp_path):
    result = run_job("job", ["nosuchcommand", "--env", "X", "--seed", "0"], tmp_path / "runs")
    assert result.returncode == 2 and not result.finished and "invalid choice" in result.error


@pytest.mark.slow
def test_killed_job_is_retried_and_resumes_from_its_checkpoint(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("n_envs: 2\ncheckpoint_every: 1000\neval_episodes: 1\n"
                   "algo_kwargs: {ppo: {n_steps: 250, batch_size: 250, n_epochs: 1}}\n")
    suite = expand({"name": "kill", "cells": [{"command": "ppo", "env": "CartPole-v1", "seeds": [0],
                                               "args": {"steps": 10000, "config": str(cfg)}}]})
    backend = LocalBackend(1)
    commits = iter(["aaaaaaa", "bbbbbbb"])  # the code on disk when each attempt starts
    runner = Runner(suite.jobs, tmp_path / "kill", backend, retries=1, echo=lambda message: None,
                    commit=lambda: next(commits))
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "kill").glob("runs/*/*/checkpoints/latest.json")):
        time.sleep(0.2)
    assert backend.procs, "the job never started"
    os.kill(next(iter(backend.procs)).pid, signal.SIGKILL)  # no chance to clean up
    thread.join(timeout=180)
    assert not thread.is_alive()
    (record,) = runner.state.records.values()
    assert record.status == "done" and record.attempts == 2
    first, second = record.history
    assert first["error"] == "killed by SIGKILL" and first["returncode"] == -signal.SIGKILL
    assert second["returncode"] == 0 and second["resumed_from"] == record.run_dir
    assert (first["commit"], second["commit"], record.commit) == ("aaaaaaa", "bbbbbbb", "bbbbbbb")
    summary = json.loads((tmp_path / "kill" / "runs" / record.run_dir / "summary.json").read_text())
    assert summary["steps"] >= 10000


@pytest.mark.slow
def test_stopped_bench_leaves_its_running_job_checkpointed_where_it_was(tmp_path):
    """SIGTERM to the bench (a scheduler, or `kill`) stops its job through rlgen's Ctrl-C path: the job writes a
    checkpoint at the step it reached (no periodic one is due) and is pending again; the next bench resumes it."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("n_envs: 2\ncheckpoint_every: 1000000000\neval_episodes: 1\n"
                   "algo_kwargs: {ppo: {n_steps: 100, batch_size: 100, n_epochs: 1}}\n")
    suite = write_suite(tmp_path / "s.yaml", [{"command": "ppo", "env": "CartPole-v1", "seeds": [0],
                                               "args": {"steps": 1000000, "config": str(cfg)}}], name="stop")
    argv = [sys.executable, "-m", "rlgen.run", "bench", str(suite), "--out", str(tmp_path), "--jobs", "1"]
    bench = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    progress: list[Path] = []
    while time.time() < deadline and not (progress and len(progress[0].read_text().splitlines()) >= 4):
        progress = list((tmp_path / "stop" / "runs").glob("*/*/progress.csv"))
        time.sleep(0.2)
    assert progress, "the job logged nothing"
    bench.terminate()
    bench.communicate(timeout=120)
    assert bench.returncode == 130
    latest = progress[0].parent / "checkpoints" / "latest.json"
    deadline = time.time() + 60  # the job finishes its checkpoint after the bench has gone
    while time.time() < deadline and not latest.is_file():
        time.sleep(0.2)
    assert json.loads(latest.read_text())["step"] >= 300
    (record,) = jobs_json(tmp_path / "stop").values()
    assert record["status"] == "pending"


def test_ray_option_without_ray_is_a_one_line_error(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    suite = write_suite(tmp_path / "s.yaml", [{"command": "trpo", "env": ["CartPole-v1"], "args": TINY_TRPO}])
    out = tmp_path / "results"
    code = main(["bench", str(suite), "--out", str(out), "--ray", "auto"])
    err = capsys.readouterr().err
    assert code == 2 and "rlgen[ray]" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # no empty suite folder left behind


# ---------------------------------------------------------------------------------------------------- Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ray rewrites a loopback node address to the host's own address, so that other machines could join. For a
# cluster that stays on loopback, the head and the driver are told it is a one-machine cluster (the variable
# below); `ray start` refuses to add a worker node then, so the worker runs `ray start` with that rewrite off.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
WORKER_NODE = ("import sys, ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
               "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()")


@pytest.fixture
def ray_cluster():
    """A head and a worker node (one CPU each) on 127.0.0.1; yields the address. Each node runs in its own
    process group under ``ray start --block``, and only those groups are stopped afterwards."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'rlgen[ray]'); the Ray backend is "
                                      "tested only where it is")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rlray")  # short: Ray's socket paths must fit in 107 bytes
    env = {**ENV, **LOOPBACK}
    common = ["--num-cpus", "1", "--disable-usage-stats", "--block"]
    head = subprocess.Popen([sys.executable, "-c", WORKER_NODE, "start", "--head", "--node-ip-address",
                             "127.0.0.1", "--port", str(port), "--include-dashboard", "false", "--temp-dir", temp,
                             *common], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    procs = [head]
    try:
        _wait_for_port(port, head)  # the head's GCS is up: a worker can join
        worker = subprocess.Popen([sys.executable, "-c", WORKER_NODE, "start", "--address", f"127.0.0.1:{port}",
                                   "--node-ip-address", "127.0.0.1", *common],
                                  env={**ENV, "RAY_USAGE_STATS_ENABLED": "0"}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, start_new_session=True)
        procs.append(worker)
        _wait_for_nodes(port, 2, worker)
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(2)
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # `ray start --block` may ignore SIGTERM
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    pytest.fail(f"the Ray head did not listen on 127.0.0.1:{port} in {timeout:g} s")


def _wait_for_nodes(port: int, n: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    probe = (f"import ray; ray.init(address='127.0.0.1:{port}', log_to_driver=False); "
             f"print(sum(x['Alive'] for x in ray.nodes()))")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}: {proc.stderr.read()[-2000:]}")
        out = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=60,
                             env={**ENV, **LOOPBACK})
        if out.returncode == 0 and out.stdout.strip().isdigit() and int(out.stdout.strip()) >= n:
            return
        time.sleep(1)
    pytest.fail(f"the Ray cluster did not reach {n} node(s) in {timeout:g} s")


@pytest.mark.slow
def test_ray_backend_on_a_loopback_cluster(ray_cluster, tmp_path):
    suite = write_suite(tmp_path / "ray.yaml", [  # the expert first: its rollouts wait for it, not for TRPO
        {"id": "expert", "command": "expert", "env": ["CartPole-v1"], "args": {"steps": 500}, "seeds": [0]},
        {"command": "trpo", "label": "TRPO", "env": ["SparseMountainCar"], "args": TINY_TRPO, "seeds": 2},
        {"command": "rollouts", "env": ["CartPole-v1"], "args": {"policy": "{run:expert}", "episodes": 2},
         "seeds": [0], "metric": "return_mean", "curve": None},
    ], name="raysuite")
    env = {**ENV, **LOOPBACK}
    out = bench(str(suite), "--out", str(tmp_path / "results"), "--ray", ray_cluster, "--retries", "0", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    suite_dir = tmp_path / "results" / "raysuite"
    state = jobs_json(suite_dir)
    assert len(state) == 4 and all(r["status"] == "done" for r in state.values())
    # results came back to the driver: run directories, and the rollouts job found its expert on its worker
    for record in state.values():
        assert (suite_dir / "runs" / record["run_dir"] / "summary.json").is_file()
    rollouts = next(r for r in state.values() if r["argv"][0] == "rollouts")
    assert (suite_dir / "runs" / rollouts["run_dir"] / "demos.npz").is_file()
    assert not list(suite_dir.glob("runs/*/*/checkpoints/*.zip"))  # finished jobs ship without checkpoints
    md = (suite_dir / "RESULTS.md").read_text()
    assert "Ray cluster at 127.0.0.1" in md and "2 nodes" in md and (suite_dir / "curves.png").is_file()


def test_unfinished_jobs_are_failed_only_when_their_attempt_failed(tmp_path):
    """A job that never ran is reported as not run, not as failed."""
    from rlgen.bench.aggregate import aggregate
    from rlgen.bench.collect import collect
    from rlgen.bench.suite import load_suite

    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("name: s\ncells:\n  - command: trpo\n    env: CartPole-v1\n    args: {steps: 100}\n"
                          "    seeds: 2\n")
    jobs = load_suite(str(suite_file)).jobs
    (cell,) = aggregate(collect(jobs, {}, failed={jobs[0].id}))
    assert (cell.n_failed, cell.n_not_run, cell.score.n) == (1, 1, 0)


def test_a_job_whose_dependency_is_kept_only_as_a_result_is_not_run(tmp_path):
    """A kept result counts as finished for the tables, but a job that needs the files of its dependency's run
    directory (an expert's model) cannot run without them: it fails with a line saying how to rerun the dependency."""
    from rlgen.bench.collect import KEPT_DIR

    suite = expand({"name": "d", "metric": "score", "cells": [
        {"id": "expert", "command": "expert", "env": ["A"], "seeds": [0], "shared": True},
        {"command": "gail", "env": ["A"], "seeds": [0], "args": {"demos": "{run:expert}/demos.npz"}}]})
    expert, gail = suite.jobs
    (tmp_path / KEPT_DIR).mkdir()
    (tmp_path / KEPT_DIR / f"{expert.id}.json").write_text(json.dumps({"summary": {"score": 1.0}, "curves": {}}))

    class NoBackend:
        def submit(self, *args, **kwargs):
            raise AssertionError("nothing should run")

        def close(self):
            pass

    state = Runner(suite.jobs, tmp_path, NoBackend(), echo=lambda message: None).run()
    assert state.get(expert.id).status == DONE
    assert state.get(gail.id).status == "failed"
    assert "run directory of the job it needs" in state.get(gail.id).error and expert.id in state.get(gail.id).error


def test_the_runner_keeps_a_jobs_result_as_soon_as_it_finishes(tmp_path):
    """Not only when the bench ends: a bench stopped midway (a session's end) keeps what had finished."""
    import concurrent.futures as cf

    from rlgen.bench.collect import kept_result
    from rlgen.bench.execute import AttemptResult

    suite = expand({"name": "k", "metric": "score", "curve": "loss",
                    "cells": [{"command": "trpo", "env": ["A"], "seeds": 1}]})
    (job,) = suite.jobs

    class WritesARunDirectory:
        def submit(self, job_id, argv, runs_root, *args):
            run = runs_root / job_id / "trpo-A-s0"
            run.mkdir(parents=True)
            (run / "config.json").write_text("{}")
            (run / "summary.json").write_text(json.dumps({"score": 3.5}))
            (run / "progress.csv").write_text("step,loss\n1,0.5\n2,0.25\n")
            future = cf.Future()
            future.set_result(None)
            return future

        def finish(self, job_id, future, runs_root):
            return AttemptResult(job_id, 0, 1.0, True, f"{job_id}/trpo-A-s0", None, "", None, "h", "cpu", 0.0)

        def close(self):
            pass

    Runner([job], tmp_path, WritesARunDirectory(), echo=lambda message: None).run()  # the Runner alone
    kept = kept_result(tmp_path, job.id)
    assert kept["summary"] == {"score": 3.5} and kept["curves"] == {"loss": [[1.0, 2.0], [0.5, 0.25]]}


def test_report_only_remakes_a_folders_tables_with_the_seeds_its_jobs_ran(tmp_path, capsys):
    """`--report-only --out X` on a folder of extra seeds (5-9) tables the seeds its jobs ran (from jobs.json, all
    the parts it ran in), not the suite's default 0-4; the kept results alone are enough (no runs/)."""
    from rlgen.bench.collect import KEPT_DIR

    data = {"name": "tiny", "description": "d", "metric": "score",
            "cells": [{"command": "trpo", "label": "TRPO", "env": ["SparseMountainCar"], "seeds": 5}]}
    suite_file = tmp_path / "tiny.yaml"
    suite_file.write_text(yaml.safe_dump(data))
    suite_dir = tmp_path / "extra" / "tiny"
    (suite_dir / KEPT_DIR).mkdir(parents=True)
    # two parts, the last with one seed: the folder's tables are of both
    (suite_dir / "suite.json").write_text(json.dumps({"suite": data, "options": {"seeds": [6]}}))
    jobs = expand(data, seeds=[5, 6]).jobs
    (suite_dir / "jobs.json").write_text(json.dumps({"jobs": {job.id: {"id": job.id, "argv": job.argv({})}
                                                              for job in jobs}}))
    for job, score in zip(jobs, (1.0, 3.0)):
        (suite_dir / KEPT_DIR / f"{job.id}.json").write_text(json.dumps({"summary": {"score": score}}))
    assert main(["bench", str(suite_file), "--out", str(tmp_path / "extra"), "--report-only"]) == 0
    assert "score: 2 ± 1.41" in capsys.readouterr().out
    with open(suite_dir / "results.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["seeds"] == "2" and row["scores"] == "5:1;6:3"
    assert json.loads((suite_dir / "suite.json").read_text())["options"] == {"seeds": [6]}  # how the jobs ran


def test_two_bench_processes_on_one_suite_keep_each_others_records(tmp_path):
    path = tmp_path / "jobs.json"
    first, second = StateFile(path), StateFile(path)  # both read the file before either writes
    first.get("job-a").status = RUNNING
    first.save()
    second.get("job-b").status = DONE
    second.save()  # must not drop job-a, which it never touched
    first.get("job-a").status = DONE
    first.save()  # must not drop job-b
    on_disk = StateFile(path)
    assert on_disk.get("job-a").status == DONE and on_disk.get("job-b").status == DONE


def test_commit_is_dirty_for_code_changes_but_not_for_results_files(tmp_path):
    import subprocess

    from rlgen.common.provenance import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "jobs.json").write_text("{}\n")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "init")
    clean = git_commit(tmp_path)
    assert len(clean) >= 7 and not clean.endswith("-dirty")
    (tmp_path / "benchmarks" / "results" / "jobs.json").write_text('{"jobs": {}}\n')  # a running bench's record
    assert git_commit(tmp_path) == clean
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "-dirty"


def test_commit_of_a_copy_without_git_comes_from_rlgen_commit(tmp_path, monkeypatch):
    from rlgen.common.provenance import git_commit

    monkeypatch.delenv("RLGEN_COMMIT", raising=False)
    assert git_commit(tmp_path) == "unknown (not a git checkout)"
    monkeypatch.setenv("RLGEN_COMMIT", "abc1234")
    assert git_commit(tmp_path) == "abc1234 (from RLGEN_COMMIT; not a git checkout)"


def test_jobs_waiting_for_a_free_slot_stay_pending_in_jobs_json(tmp_path):
    """With one job at a time, jobs.json marks only the job that runs as running, not those queued behind it (the
    runner submits no more jobs than the backend runs at once)."""
    import concurrent.futures as cf

    from rlgen.bench.execute import AttemptResult

    suite = expand({"name": "q", "metric": "score", "cells": [{"command": "trpo", "env": ["A"], "seeds": 3}]})
    statuses_while_running = []

    class OneAtATime:
        capacity = 1

        def submit(self, job_id, argv, runs_root, *args):
            run = runs_root / job_id / "trpo-A"
            run.mkdir(parents=True)
            (run / "summary.json").write_text(json.dumps({"score": 1.0}))
            future = cf.Future()
            future.set_result(None)
            return future

        def finish(self, job_id, future, runs_root):
            state = json.loads((tmp_path / "jobs.json").read_text())["jobs"]
            statuses_while_running.append(sorted(rec["status"] for rec in state.values()))
            return AttemptResult(job_id, 0, 1.0, True, f"{job_id}/trpo-A", None, "", None, "h", "cpu", 0.0)

        def close(self):
            pass

    Runner(suite.jobs, tmp_path, OneAtATime(), echo=lambda message: None).run()
    assert statuses_while_running == [["pending", "pending", "running"], ["done", "pending", "running"],
                                      ["done", "done", "running"]]


def test_report_only_on_a_folder_where_the_suite_never_ran_is_one_line(capsys, tmp_path):
    from tests.cli_helpers import fails_cleanly

    fails_cleanly(capsys, ["bench", "smoke", "--report-only", "--out", str(tmp_path / "empty")], "nothing to report",
                  "smoke")
    assert not (tmp_path / "empty").exists()


def test_a_damaged_suite_record_or_conflicting_modes_are_one_line(capsys, tmp_path):
    from tests.cli_helpers import fails_cleanly

    for text, words in (("{bad", ["not valid JSON"]), ("{}", ["holds no suite"])):
        (tmp_path / "suite.json").write_text(text)
        fails_cleanly(capsys, ["bench", "--resume", str(tmp_path), "--dry-run"], str(tmp_path / "suite.json"), *words)
    fails_cleanly(capsys, ["bench", "smoke", "--dry-run", "--report-only", "--out", str(tmp_path / "r")],
                  "--dry-run and --report-only")
    assert not (tmp_path / "r").exists()
