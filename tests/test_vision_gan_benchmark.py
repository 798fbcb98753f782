"""benchmarks/vision_gan.py: a table of more seeds grows from the committed result file."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vision_gan.py"


@pytest.fixture(scope="module")
def vision_gan():
    spec = importlib.util.spec_from_file_location("vision_gan_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def finished_infogan_run(path: Path, seed: int, error: float, **options: float) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"command": "infogan", "seed": seed, **options}))
    (path / "summary.json").write_text(json.dumps({"epochs": 40, "test_images": 10000, "categorical_error": error,
                                                   "wall_clock_s": 10.0}))
    (path / "progress.csv").write_text("time/images_per_s\n200\n")
    return path


def test_with_rows_tables_the_earlier_seeds_that_were_not_run_again(vision_gan, tmp_path):
    earlier = {"benchmark": "infogan", "commit": "abc1234", "date": "2026-11-21 21:13 UTC", "device": "AMD EPYC",
               "rows": [{"seed": 0, "categorical_error": 0.06, "run": "gone/s0"},
                        {"seed": 1, "categorical_error": 0.50, "run": "gone/s1"}]}
    earlier_path = tmp_path / "earlier.json"
    earlier_path.write_text(json.dumps(earlier))
    run = finished_infogan_run(tmp_path / "runs" / "s1", seed=1, error=0.04)
    results = tmp_path / "results"

    code = vision_gan.main(["infogan", "--dataset", "mnist_partial.npz", "--from-runs", str(run),
                            "--with-rows", str(earlier_path), "--results", str(results)])

    assert code == 0
    table = json.loads((results / "infogan-mnist_partial.json").read_text())
    assert [r["seed"] for r in table["rows"]] == [0, 1]
    seed0, seed1 = table["rows"]
    assert seed0["categorical_error"] == 0.06 and seed0["reported"] == "abc1234, 2026-11-21 21:13 UTC, AMD EPYC"
    assert seed1["categorical_error"] == 0.04 and "reported" not in seed1  # the new run replaces the old row
    assert table["mean"] == pytest.approx(0.05) and table["target_met"] is True


def test_with_rows_of_another_benchmark_is_one_line_error(vision_gan, tmp_path, capsys):
    wrong = tmp_path / "ssgan.json"
    wrong.write_text(json.dumps({"benchmark": "ssgan", "rows": []}))
    run = finished_infogan_run(tmp_path / "runs" / "s1", seed=1, error=0.04)

    code = vision_gan.main(["infogan", "--from-runs", str(run), "--with-rows", str(wrong),
                            "--results", str(tmp_path / "results")])

    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds 'ssgan' results, not 'infogan'" in err
    assert not (tmp_path / "results").exists()


def test_a_tagged_variant_gets_its_own_file_and_its_rows_say_how_q_was_trained(vision_gan, tmp_path):
    paper = finished_infogan_run(tmp_path / "runs" / "paper", seed=0, error=0.20)
    variant = finished_infogan_run(tmp_path / "runs" / "variant", seed=0, error=0.04, real_clustering=1.0,
                                   real_consistency=1.0)
    results = tmp_path / "results"
    (variant / "samples").mkdir()
    (variant / "samples" / "traversal_categorical_0.png").write_bytes(b"png")
    assert vision_gan.main(["infogan", "--from-runs", str(paper), "--results", str(results)]) == 0
    assert vision_gan.main(["infogan", "--from-runs", str(variant), "--results", str(results), "--tag", "real"]) == 0
    (row,) = json.loads((results / "infogan-mnist.json").read_text())["rows"]
    assert (row["categorical_error"], row["real_clustering"], row["real_consistency"]) == (0.20, 0.0, 0.0)
    (row,) = json.loads((results / "infogan-mnist-real.json").read_text())["rows"]
    assert (row["categorical_error"], row["real_clustering"], row["real_consistency"]) == (0.04, 1.0, 1.0)
    # each seed's traversal of the code is kept beside the table (runs/ is not committed)
    assert row["traversal_png"] == "infogan-mnist-real-s0-categorical.png"
    assert (results / row["traversal_png"]).read_bytes() == b"png"


def test_code_usage_names_a_pair_that_shares_two_values_by_style(vision_gan):
    # Seed 1 of the variant: every digit in a value of its own but 7 and 9, whose two values each hold both
    confusion = np.diag([1000] * 10)
    confusion[7, 7], confusion[7, 9] = 606, 293
    confusion[9, 7], confusion[9, 9] = 403, 666
    usage = vision_gan.code_usage(confusion.tolist())
    assert usage["split_digits"] == [] and usage["merged_digits"] == []  # each keeps a majority value
    assert usage["wrong_digits"] == [7, 9]
    assert usage["digit_error"][7] == pytest.approx(403 / 1009, abs=1e-4)
    assert usage["digit_error"][9] == pytest.approx(293 / 959, abs=1e-4) and usage["digit_error"][0] == 0
    merged = np.diag([1000] * 10)
    merged[4, 4], merged[4, 9], merged[9, 9], merged[9, 7] = 1000, 1000, 0, 500  # 4 and 9 share value 4
    merged[7, 7] = 500  # 7 split over values 7 and 9
    usage = vision_gan.code_usage(merged.tolist())
    assert usage["split_digits"] == [7] and usage["merged_digits"] == [9] and 9 in usage["wrong_digits"]


def test_a_run_kept_from_several_starts_is_reported_as_its_seed_with_each_starts_score(vision_gan, tmp_path):
    starts = [finished_infogan_run(tmp_path / "base" / f"candidate-{i}" / "run", seed=3 + 1000 * i, error=e)
              for i, e in enumerate((0.10, 0.03))]
    for run, error in zip(starts, (0.10, 0.03)):
        (run / "progress.csv").write_text(f"time/images_per_s,time/epoch,eval/categorical_error\n200,,\n,2,{error}\n")
    selection = {"restarts": 2, "select_after": 2, "kept": 1,
                 "candidates": [{"candidate": i, "seed": 3 + 1000 * i, "run": str(run), "score": score}
                                for i, (run, score) in enumerate(zip(starts, (-2.1, -2.2)))]}
    kept = starts[1]
    (kept / "selection.json").write_text(json.dumps(selection))
    results = tmp_path / "results"
    assert vision_gan.main(["infogan", "--from-runs", str(kept), "--results", str(results), "--tag", "best"]) == 0
    (row,) = json.loads((results / "infogan-mnist-best.json").read_text())["rows"]
    assert row["seed"] == 3 and row["kept_start"] == 1 and row["start_seeds"] == [3, 1003]
    assert row["start_scores"] == [-2.1, -2.2] and row["start_errors"] == [0.10, 0.03]
    assert row["other_starts_wall_clock_s"] == 10.0  # the start not kept: its training is part of the choice's cost
