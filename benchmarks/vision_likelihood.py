"""Likelihood benchmarks of issue #6: PixelCNN, PixelRNN (Row LSTM, Diagonal BiLSTM) and the VAEs (diagonal,
IAF, bidirectional ladder), measured the way the papers measure them, plus training speed against straightforward
implementations of the same models.

1. **Likelihood.** Each model is trained with ``rlgen <command>`` (the shared trainer, checkpoints, sample grids)
   and its last checkpoint is evaluated on the test split: binarised MNIST (dynamically binarised during training,
   the test images binarised once with a fixed seed) in nats per image, 8-bit Fashion-MNIST in bits per dimension.
   The VAEs report the ELBO and the importance-sampled ``log p(x)`` with ``--iw-samples`` samples. The targets of
   the issue (full 10k test set, MNIST): PixelCNN <= 81.5 nats, Diagonal BiLSTM <= 80.5, VAE + IAF <= 81.
2. **Speed.** Training images/s (forward, backward, Adam step on one batch of binarised 28x28 images) of each
   model at its default size against its straightforward twin from :mod:`rlgen.vision.likelihood.reference` (full
   masked kernels multiplied by the mask every pass; Row LSTM gates computed row by row inside the loop; Diagonal
   BiLSTM with loop-based skewing and one loop per direction), with the same parameters, in the same process, on
   the CPU and, when there is one, the GPU. For the VAE: importance-sampled evaluation, k samples in one batch
   against a Python loop over the samples. Also the time to sample a batch of images from each trained model.

The figures are printed with the command, commit, device and date, and written as JSON under ``--out``.

    # a tiny budget (minutes on 2 CPU cores; the likelihoods are then far from the papers' and marked partial)
    python benchmarks/vision_likelihood.py --epochs 1 --limit-images 512 --eval-images 500 --iw-samples 50
    # the issue's figures (a GPU; hours)
    python benchmarks/vision_likelihood.py --epochs 50 --eval-images 10000 --iw-samples 1000 --device cuda
    # or train with rlgen itself (resumable: --resume RUN --epochs N), then evaluate the runs' last checkpoints
    # (each command wraps onto a second line here)
    python -m rlgen.run pixelcnn --dataset mnist_partial.npz --data-dir ../shared/data/mnist
        --binarize dynamic --epochs 20 --out runs/bench-likelihood
    python benchmarks/vision_likelihood.py --skip-speed --from-runs RUN1,RUN2
        --eval-images 10000 --iw-samples 100 --iw-images 1000 --out benchmarks/results/vision-likelihood
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from rlgen.common.checkpoint import load_json, load_torch
from rlgen.common.errors import UserError
from rlgen.common.options import argv_of
from rlgen.common.provenance import command_line
from rlgen.common.run_dir import saved_run_config
from rlgen.vision import config
from rlgen.vision.datasets import BatchLoader, ImageDataset, load_dataset
from rlgen.vision.likelihood.outputs import LN2
from rlgen.vision.likelihood.reference import reference_log_likelihood, to_reference
from rlgen.vision.train import train as train_model

REPO = Path(__file__).resolve().parents[1]

# name -> (command, flags)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {  # name -> (command, its options beyond the defaults)
    "pixelcnn": ("pixelcnn", {}),
    "rowlstm": ("pixelrnn", {"variant": "rowlstm"}),
    "diagbilstm": ("pixelrnn", {"variant": "diagbilstm"}),
    "vae": ("vae", {}),
    "vae-iaf": ("vae", {"iaf_steps": 2}),
    "vae-bidirectional": ("vae", {"bidirectional": True, "iaf_steps": 1, "free_bits": 0.1}),
}
# A much smaller model of each kind, for smoke runs of this script.
TINY: dict[str, dict[str, Any]] = {
    "pixelcnn": {"hidden": 8, "layers": 2, "output_hidden": 16},
    "pixelrnn": {"hidden": 4, "layers": 1, "output_hidden": 8},
    "vae": {"hidden": 16, "z_dim": 8, "iaf_hidden": 32, "context_dim": 16},
}
TARGETS_NATS = {"pixelcnn": 81.3, "diagbilstm": 80.5, "vae-iaf": 81.0}  # binarised MNIST, full test set
TEST_SET = 10_000


def environment(device: str) -> dict[str, Any]:
    """Commit, device and date, for the record."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unknown"

    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]), "commit": commit,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "device": device,
            "cpu": f"{cpu} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})", "gpu": gpu,
            "torch": torch.__version__, "python": platform.python_version()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------------------
# Speed


def default_model(name: str, tiny: bool, shape: tuple[int, int, int] = (1, 28, 28)) -> torch.nn.Module:
    """The model ``name`` at the command's default size (vision.yaml plus the model's flags), Bernoulli output."""
    from rlgen.vision.models import model_class

    command, options = MODELS[name]
    cfg = {**config.packaged_defaults(command)[0], **options, **(TINY[command] if tiny else {}),
           "binarize": "static", "command": command}  # binary pixels: Bernoulli output
    return model_class(command).from_config(cfg, SimpleNamespace(image_shape=shape), None)


def trainer_step(model: torch.nn.Module, x: torch.Tensor, device: torch.device):
    """A function doing one training step (loss, backward, Adam) of ``model`` on the batch ``x``."""
    from rlgen.vision.datasets import Batch

    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = Batch(x.to(device))

    def step() -> None:
        loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def interleaved(functions: list, images: int, steps: int, rounds: int, device: torch.device) -> list[float]:
    """Images/s of each function, timed in alternating rounds of ``steps`` calls after one warm-up call each; the
    best round of each counts (the machine is shared: the best round is the least disturbed one)."""
    for fn in functions:
        fn()
    best = [0.0] * len(functions)
    for _ in range(rounds):
        for k, fn in enumerate(functions):
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            sync(device)
            best[k] = max(best[k], steps * images / (time.perf_counter() - start))
    return best


def speed(models: list[str], devices: list[str], batch: int, steps: int, rounds: int, k: int,
          tiny: bool) -> list[dict[str, Any]]:
    rows = []
    g = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.13), generator=g)
    for device_name in devices:
        device = torch.device(device_name)
        for name in models:
            torch.manual_seed(0)
            model = default_model(name, tiny)
            row: dict[str, Any] = {"model": name, "device": device_name, "batch": batch,
                                   "parameters": sum(p.numel() for p in model.parameters())}
            if MODELS[name][0] == "vae":
                (row["train_images_per_s"],) = interleaved([trainer_step(model, x, device)], batch, steps, rounds,
                                                           device)
                model.eval()
                xs = x[:max(1, min(batch, 16))].to(device)

                def vectorised(model=model, xs=xs) -> None:
                    with torch.no_grad():
                        model.log_likelihood(xs, k)

                def loop(model=model, xs=xs) -> None:
                    with torch.no_grad():
                        reference_log_likelihood(model, xs, k)

                fast, ref = interleaved([vectorised, loop], len(xs), 1, rounds, device)
                row.update({"what": f"log p(x), k={k}", "fast_images_per_s": fast, "reference_images_per_s": ref})
            else:
                reference = to_reference(model)
                fast, ref = interleaved([trainer_step(model, x, device), trainer_step(reference, x, device)], batch,
                                        steps, rounds, device)
                row.update({"what": "training", "fast_images_per_s": fast, "reference_images_per_s": ref})
            row["speedup"] = row["fast_images_per_s"] / row["reference_images_per_s"]
            rows.append(row)
            print(f"  speed {name:18s} {device_name}: {row['fast_images_per_s']:9.1f} vs "
                  f"{row['reference_images_per_s']:9.1f} images/s ({row['what']}; x{row['speedup']:.2f})", flush=True)
    return rows


def iw_chunks(models: list[str], sizes: list[int], rounds: int, k: int, tiny: bool) -> list[dict[str, Any]]:
    """Seconds for the VAEs' importance-sampled log p(x) of 16 images (k samples) on the CPU, with the samples
    in chunks of at most ``size`` images, against the loop over samples: what ``log_likelihood``'s ``max_batch``
    default on the CPU rests on."""
    x = torch.bernoulli(torch.full((16, 1, 28, 28), 0.13), generator=torch.Generator().manual_seed(0))
    rows = []
    for name in models:
        if MODELS[name][0] != "vae":
            continue
        torch.manual_seed(0)
        model = default_model(name, tiny).eval()
        functions = [lambda model=model: reference_log_likelihood(model, x, k)]
        functions += [lambda model=model, m=m: model.log_likelihood(x, k, max_batch=m) for m in sizes]
        with torch.no_grad():
            rates = interleaved(functions, len(x), 1, rounds, torch.device("cpu"))
        row = {"model": name, "k": k, "loop_s": len(x) / rates[0]}
        row.update({f"chunk_{m}_s": len(x) / r for m, r in zip(sizes, rates[1:])})
        rows.append(row)
        print(f"  log p(x) chunks {name:18s} " + " | ".join(f"{key} {v:.2f}" for key, v in row.items()
                                                           if key.endswith("_s")), flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Likelihood


def evaluate(model: torch.nn.Module, cfg: dict[str, Any], test: ImageDataset, iw_samples: int, iw_images: int,
             device: torch.device) -> dict[str, Any]:
    """Mean test NLL (nats/image, bits/dim) with its standard error; for VAEs the ELBO on every test image and the
    importance-sampled estimate on the first ``iw_images`` of them (0: all; k samples cost k ELBOs an image). The
    test images are binarised as the trainer's evaluation binarises them."""
    loader = BatchLoader(test, 100 if cfg["command"] != "vae" else 25, device, shuffle=False, drop_last=False,
                         binarize=cfg.get("binarize"), seed=int(cfg["seed"]) + 1)
    dims = int(np.prod(test.image_shape))
    iw_images = iw_images or len(test)
    values: dict[str, list[torch.Tensor]] = {"nll": [], "neg_elbo": []}
    model.to(device).eval()
    torch.manual_seed(1234)
    seen = 0
    with torch.no_grad():
        for batch in loader.epoch(0):
            if cfg["command"] == "vae":
                values["neg_elbo"].append(-model.elbo(batch.x).cpu())
                if seen < iw_images:
                    values["nll"].append(-model.log_likelihood(batch.x[:iw_images - seen], iw_samples).cpu())
            else:
                values["nll"].append(model.nll(batch.x).cpu())
            seen += len(batch.x)
    out: dict[str, Any] = {"test_images": len(test)}
    for key, chunks in values.items():
        if chunks:
            v = torch.cat(chunks).double()
            out[f"{key}_images"] = len(v)
            out[f"{key}_nats"] = v.mean().item()
            out[f"{key}_nats_stderr"] = (v.std() / math.sqrt(len(v))).item()
            out[f"{key}_bits_per_dim"] = v.mean().item() / (dims * LN2)
    return out


def model_name(cfg: dict[str, Any]) -> str:
    """The name in ``MODELS`` of the model that a run's config trained."""
    if cfg["command"] == "pixelrnn":
        return str(cfg["variant"])
    if cfg["command"] == "vae":
        return "vae-bidirectional" if cfg.get("bidirectional") else "vae-iaf" if cfg.get("iaf_steps") else "vae"
    return str(cfg["command"])


def train(name: str, dataset: str, data_dir: str, binarize: str, args: argparse.Namespace, out: Path) -> Path | None:
    """Train ``name`` with ``rlgen <command>``; its run directory, or None when training failed."""
    command, model_options = MODELS[name]
    options = {"dataset": dataset, "data_dir": data_dir, "binarize": binarize, "epochs": args.epochs,
               "seed": args.seed, "out": str(out), "device": args.device, "evaluate": False,
               "n_samples": args.sample_n, **model_options, **(TINY[command] if args.tiny else {}),
               **{key: getattr(args, key) for key in ("limit_images", "batch_size") if getattr(args, key)}}
    print(f"  {command_line([command, *argv_of(options, config.declared(command))])}", flush=True)
    before = set(out.glob(f"{command}-*"))
    try:
        train_model(config.resolve(command, options))
    except UserError as exc:
        print(f"  rlgen {command}: error: {exc}", flush=True)
        return None
    (run,) = set(out.glob(f"{command}-*")) - before
    return run


def evaluate_run(run: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate the last checkpoint of the run directory ``run`` (trained by this script, or by ``rlgen`` itself,
    perhaps resumed for more epochs, still training or interrupted) on the test split of its dataset, on
    ``--device``."""
    cfg = saved_run_config(run)
    latest = load_json(run / "checkpoints" / "latest.json")
    summary = load_json(run / "summary.json") if (run / "summary.json").is_file() else {}  # none while training
    from rlgen.vision.likelihood.outputs import binary_pixels
    from rlgen.vision.models import model_class
    from rlgen.vision.train import load_test_data

    command, name, binarize = cfg["command"], model_name(cfg), cfg.get("binarize") or "none"
    binary = binary_pixels(cfg)  # binarised by rlgen, or already binary (the binarised MNIST)
    # The test split, whichever split the run evaluated while training (the binarised MNIST's: valid).
    test = load_test_data({**cfg, "evaluate": True, "eval_split": "test"})
    if args.eval_images and args.eval_images < len(test):
        test = test.take(args.eval_images)
    model = model_class(command).from_config(cfg, test, None)
    device = torch.device(args.device)
    model.load_state_dict(load_torch(run / "checkpoints" / latest["file"], map_location=device)["model"])
    # An interrupted run's checkpoint may lie within an epoch: steps / steps_per_epoch says how far (older
    # checkpoints lack steps_per_epoch and were always written at an epoch's end).
    per_epoch = latest.get("steps_per_epoch") or latest["step"] // max(1, latest["epoch"])
    row: dict[str, Any] = {"model": name, "dataset": Path(cfg["dataset"]).stem, "binarize": binarize, "run": str(run),
                           "epochs": round(latest["step"] / max(1, per_epoch), 2),
                           "train_images": per_epoch * cfg["batch_size"], "train_seconds": summary.get("wall_clock_s"),
                           "train_device": summary.get("device"), "sample_seconds": summary.get("sample_seconds"),
                           "sample_images": summary.get("sample_images")}
    if command == "pixelrnn":
        row["skip_connections"] = bool(cfg["skip_connections"])
    start = time.perf_counter()
    row.update(evaluate(model, cfg, test, args.iw_samples, args.iw_images, device))
    row["eval_seconds"] = round(time.perf_counter() - start, 1)
    if command == "vae":
        row["iw_samples"] = args.iw_samples
    is_mnist = "mnist" in cfg["dataset"].lower() and "fashion" not in cfg["dataset"].lower()
    target = TARGETS_NATS.get(name) if binary and is_mnist else None
    if target is not None:
        row["target_nats"] = target
        if row["nll_images"] >= TEST_SET:
            row["target"] = "met" if row["nll_nats"] <= target else "not met"
        else:
            row["target"] = f"not comparable: {row['nll_images']} of {TEST_SET} test images"
    unit = "nats" if binary else "bits/dim"
    value = row["nll_nats"] if binary else row["nll_bits_per_dim"]
    print(f"  -> {name} on {row['dataset']}: test NLL {value:.4g} {unit} ({row['nll_images']} images)", flush=True)
    return row


# ----------------------------------------------------------------------------------------------------------------
# Report


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    lines = ["| " + " | ".join(title for title, _, _ in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            value = row.get(key)
            cells.append("" if value is None else (format(value, fmt) if fmt else str(value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--mnist", default="mnist/mnist_partial.npz",
                        help="binarised-MNIST dataset: mnist (the official files) or an .npz with x_train/x_test "
                             "(default: the shared mnist_partial.npz; '' to skip)")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--fashion", default="fashion-mnist", help="8-bit dataset for bits/dim ('' to skip)")
    parser.add_argument("--fashion-data-dir", default="/usr/share/datasets")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit-images", type=int, default=512, help="training images (0: all)")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the command's default")
    parser.add_argument("--eval-images", type=int, default=500, help=f"test images (0 or {TEST_SET}: all)")
    parser.add_argument("--iw-samples", type=int, default=50, help="k of the VAEs' log p(x) (the papers: 1000s)")
    parser.add_argument("--iw-images", type=int, default=0,
                        help="the VAEs' log p(x) on only the first N evaluated test images (0: all; the ELBO is on all)")
    parser.add_argument("--sample-n", type=int, default=16, help="images per sample grid (timed)")
    parser.add_argument("--speed-batch", type=int, default=32)
    parser.add_argument("--speed-steps", type=int, default=3, help="training steps per timed round")
    parser.add_argument("--speed-rounds", type=int, default=3, help="alternating timed rounds (the best counts)")
    parser.add_argument("--speed-devices", default="cpu,cuda",
                        help="comma-separated devices of the speed table (cuda only where there is one)")
    parser.add_argument("--iw-chunks", default="",
                        help="comma-separated chunk sizes (images): also time the VAEs' log p(x) with each on the CPU")
    parser.add_argument("--tiny", action="store_true", help="much smaller models (a smoke run of this script)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--from-runs", default="", metavar="RUN[,RUN...]",
                        help="evaluate these run directories of rlgen vae|pixelcnn|pixelrnn (e.g. resumed for more "
                             "epochs) instead of training; implies --skip-train")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device of the trainings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-likelihood"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}")
    speed_devices = args.speed_devices.split(",")
    if not set(speed_devices) <= {"cpu", "cuda"}:
        parser.error(f"--speed-devices takes cpu and/or cuda, got {args.speed_devices!r}")
    from_runs = [Path(r.strip()) for r in args.from_runs.split(",") if r.strip()]
    missing = [str(r) for r in from_runs if not (r / "checkpoints" / "latest.json").is_file()]
    if missing:
        parser.error(f"--from-runs: no run with a checkpoint (config.json, checkpoints/latest.json) in "
                     f"{', '.join(missing)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = environment(args.device)
    print("\n".join(f"{k}: {v}" for k, v in env.items()), flush=True)

    speed_rows: list[dict[str, Any]] = []
    if not args.skip_speed:
        print("speed (images/s, ours vs the straightforward twin, same parameters, same process):", flush=True)
        devices = [d for d in ("cpu", "cuda") if d in speed_devices and (d == "cpu" or torch.cuda.is_available())]
        speed_rows = speed(models, devices, args.speed_batch, args.speed_steps, args.speed_rounds, args.iw_samples,
                           args.tiny)

    chunk_rows: list[dict[str, Any]] = []
    if args.iw_chunks:
        print(f"seconds for log p(x) of 16 images, k={args.iw_samples}, CPU: the loop against chunks:", flush=True)
        chunk_rows = iw_chunks(models, [int(c) for c in args.iw_chunks.split(",")], args.speed_rounds,
                               args.iw_samples, args.tiny)

    likelihood_rows: list[dict[str, Any]] = []
    if not args.skip_train and not from_runs:
        for dataset, data_dir, binarize in ((args.mnist, args.data_dir, "dynamic"),
                                            (args.fashion, args.fashion_data_dir, "none")):
            if not dataset:
                continue
            try:  # a missing dataset skips its half, with the reason
                load_dataset(dataset, "test", data_dir, verify=False)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                print(f"skipping {dataset}: {exc}", flush=True)
                continue
            print(f"likelihood on {dataset} ({'binarised, nats/image' if binarize != 'none' else '8-bit, bits/dim'}):",
                  flush=True)
            for name in models:
                run = train(name, dataset, data_dir, binarize, args, out)
                likelihood_rows.append(evaluate_run(run, args) if run else
                                       {"model": name, "dataset": dataset, "error": "training failed (see above)"})
    likelihood_rows += [evaluate_run(run, args) for run in from_runs]

    result = {"environment": env, "settings": vars(args), "speed": speed_rows, "iw_chunks": chunk_rows,
              "likelihood": likelihood_rows}
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = out / f"vision-likelihood-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")

    print("\n## Likelihood benchmarks (issue #6)\n")
    print("\n".join(f"- {k}: {v}" for k, v in env.items() if v is not None))
    if speed_rows:
        print("\n### Speed: ours vs a straightforward implementation of the same model\n")
        print(table(speed_rows, [("model", "model", ""), ("device", "device", ""), ("measured", "what", ""),
                                 ("batch", "batch", ""), ("params", "parameters", ","),
                                 ("ours (img/s)", "fast_images_per_s", ".1f"),
                                 ("reference (img/s)", "reference_images_per_s", ".1f"), ("speed-up", "speedup", ".2f"),
                                 ("VAE training (img/s)", "train_images_per_s", ".1f")]))
    if likelihood_rows:
        print("\n### Test likelihood\n")
        print(table(likelihood_rows, [
            ("model", "model", ""), ("dataset", "dataset", ""), ("epochs", "epochs", ""),
            ("train images/epoch", "train_images", ""), ("test images", "test_images", ""),
            ("NLL over images", "nll_images", ""), ("NLL (nats)", "nll_nats", ".2f"), ("+-", "nll_nats_stderr", ".2f"),
            ("NLL (bits/dim)", "nll_bits_per_dim", ".4f"), ("-ELBO (nats)", "neg_elbo_nats", ".2f"),
            ("k", "iw_samples", ""), ("target (nats)", "target_nats", ""), ("target", "target", ""),
            ("sample time (s)", "sample_seconds", ".2f"), ("for images", "sample_images", ""),
            ("train (s)", "train_seconds", ".0f"), ("on", "train_device", ""), ("eval (s)", "eval_seconds", ".0f")]))
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
