"""Training speed of the image models against an earlier commit's code, measured in one process (issues #21, #22).

The baseline is the model's module as it was at ``--baseline`` (read with ``git show`` and loaded beside today's), with
that commit's trainer settings: fp32 on the CPU (it had no CPU autocast) and PyTorch's default Adam (the per-tensor
loop; today's trainer uses the fused one). Today's run uses bf16 autocast where the model's packaged default has
``amp`` on (the GANs, PixelCNN) or is meant to (the VAE) and the CPU has native bf16. Both train on the same random
images in alternating rounds, so that load from other processes falls on both alike; the table gives ms per step,
images/s and the ratio. Each run also measures this core's matrix-product rate in fp32 and bf16, the ceiling of what
bf16 can gain on a step made of matrix products, and with ``--profile`` the share of today's step they take.

    python benchmarks/step_speed.py --models ssgan infogan --baseline dd9ca86 --threads 1
    python benchmarks/step_speed.py --models diagbilstm rowlstm --steps 5 --rounds 3
    python benchmarks/step_speed.py --models vae --steps 10 --rounds 5
    python benchmarks/step_speed.py --models ssgan infogan --profile   # with the share of matrix products
    python benchmarks/step_speed.py --models diagbilstm --bf16         # PixelRNN's step under bf16 autocast too

The result is printed with the commit, CPU model and flags, thread count and date, and saved as JSON under
``benchmarks/results/step-speed/``. A seed gives the same numbers only on the same CPU type, and times vary with the
machine's load: compare ratios, not absolute figures, across machines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch

from rlgen.common.device import amp_dtype, autocast
from rlgen.common.memory import keep_freed_memory
from rlgen.common.provenance import device_description, git_commit, utc_now
from rlgen.vision.datasets import Batch
from rlgen.vision.trainer import Optimizers, make_optimizers

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "step-speed"
MODULES = {"ssgan": "rlgen/vision/gan/ssgan.py", "infogan": "rlgen/vision/gan/infogan.py",
           "diagbilstm": "rlgen/vision/likelihood/pixelrnn.py", "rowlstm": "rlgen/vision/likelihood/pixelrnn.py",
           "pixelcnn": "rlgen/vision/likelihood/pixelcnn.py", "vae": "rlgen/vision/likelihood/vae.py"}
# Today's autocast: the packaged defaults, but the VAE's bf16 is measured before it becomes one (vision.yaml)
AMP = {"ssgan": True, "infogan": True, "diagbilstm": False, "rowlstm": False, "pixelcnn": True, "vae": True}
BINARY = ("diagbilstm", "rowlstm", "pixelcnn", "vae")  # Bernoulli outputs: binary pixels


def module_at(commit: str | None, path: str) -> ModuleType:
    """The module at ``path`` as it was at ``commit`` (today's file when None), loaded under a name of its own."""
    if commit is None:
        file = ROOT / path
    else:
        source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout
        file = Path(tempfile.mkdtemp(prefix="step_speed_")) / f"{Path(path).stem}_{commit}.py"
        file.write_text(source)
    name = f"_step_speed_{Path(path).stem}_{commit or 'head'}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def build(model: str, module: ModuleType, images: torch.Tensor, labels: torch.Tensor):
    """A model of ``module`` with the packaged MNIST defaults, and its per-group Adam settings."""
    if model == "ssgan":
        m = module.SSGAN(module.SSGANOptions(), images[:100], labels[:100], unlabelled_x=images)
        m.initialize(images[:500])
        lr, batch = 3e-3, 100
    elif model == "infogan":
        m = module.InfoGAN(module.InfoGANOptions())
        lr, batch = 2e-4, 128
    elif model == "vae":  # the campaign's convolutional VAE: a residual block per resolution, 2 IAF steps
        m = module.ConvVAE(module.VAEOptions(res_blocks=1, iaf_steps=2, iw_samples=0))
        lr, batch = 1e-3, 64
    elif model == "pixelcnn":  # the packaged MNIST PixelCNN: h = 32, 12 residual blocks, Bernoulli outputs
        m = module.PixelCNN(module.PixelCNNOptions(output="bernoulli"))
        lr, batch = 1e-3, 64
    else:  # the packaged MNIST PixelRNNs: h = 16, 7 layers, Bernoulli outputs
        m = module.PixelRNN(module.PixelRNNOptions(variant=model, output="bernoulli"))
        lr, batch = 1e-3, 64
    return m, lr, batch


def optimizers_for(m: torch.nn.Module, lr: float, fused: bool) -> Optimizers:
    return Optimizers(make_optimizers(m, lr, (0.5, 0.999), fused=fused), torch.device("cpu"))


def timer(m: torch.nn.Module, opt: Optimizers, images: torch.Tensor, batch: int, amp: bool,
          binary: bool = False, channels_last: bool = False) -> Callable[[int], float]:
    """A function that trains ``steps`` steps and returns the seconds they took (``channels_last``: the model's
    parameters and the batches in NHWC)."""
    cpu = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)

    def run(steps: int) -> float:
        m.train()
        start = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, len(images), (batch,), generator=generator)
            x = images[idx].float() / 255.0
            x = x.round() if binary else x
            with autocast(cpu, amp):
                m.training_step(Batch(x.contiguous(memory_format=torch.channels_last) if channels_last else x), opt)
        return time.perf_counter() - start

    return run


def gemm_rates(repeats: int = 10) -> dict[str, float]:
    """The matrix-product rate in fp32 and bf16 at the run's torch thread count (GMAC/s, the best of two shapes: a
    square 2048 product and InfoGAN's dense layer on a batch of 128): the ceiling of what bf16 autocast can gain on a
    model whose step is mostly matrix products (the GANs here; ratios above it need fewer products, not faster ones)."""
    rates = {}
    for dtype in (torch.float32, torch.bfloat16):
        best = 0.0
        for m, k, n in ((2048, 2048, 2048), (128, 6272, 1024)):
            a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
            for _ in range(2):
                a @ b
            start = time.perf_counter()
            for _ in range(repeats):
                a @ b
            best = max(best, m * k * n * repeats / (time.perf_counter() - start) / 1e9)
        rates[str(dtype).removeprefix("torch.")] = round(best, 1)
    return rates


# The ops that are matrix products (dense layers, convolutions and their backward passes), by name in the profile
PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mkldnn_convolution",
               "aten::convolution_backward", "aten::_convolution", "aten::mkldnn_linear")


def product_share(run: Callable[[int], float], steps: int) -> float:
    """The share of a training step's CPU time (self time, by torch's profiler) spent in matrix products."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in PRODUCT_OPS) / total if total else 0.0


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODULES), default=["ssgan", "infogan"])
    parser.add_argument("--baseline", default="dd9ca86", help="commit whose code is the baseline (default dd9ca86)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--steps", type=int, default=30, help="steps per round (default 30)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported (default 5)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile today's step: the share of its time in matrix products")
    parser.add_argument("--same-settings", action="store_true",
                        help="give the baseline today's trainer settings (autocast, fused Adam): the model's code alone "
                             "differs")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast for either (the models' fp32 step)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast for today's step of every model, also those whose default is fp32 "
                             "(PixelRNN): what a CPU with native bf16 would give them")
    parser.add_argument("--channels-last", action="store_true",
                        help="today's model and batches in channels-last (NHWC) memory: does it pay for this model?")
    parser.add_argument("--glibc-default-malloc", action="store_true",
                        help="leave glibc's allocator as it is (the rlgen command line keeps freed memory)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.glibc_default_malloc:
        keep_freed_memory()  # as the rlgen command line does, for both: a setting of the process
    torch.manual_seed(0)
    images = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8)  # MNIST's shape and size
    labels = torch.arange(60000) % 10
    bf16 = amp_dtype(torch.device("cpu")) is not None
    rows = []
    for model in args.models:
        variants = {}
        for label, commit, today in (("baseline", args.baseline, False), ("today", None, True)):
            m, lr, batch = build(model, module_at(commit, MODULES[model]), images, labels)
            if today and args.channels_last:
                m = m.to(memory_format=torch.channels_last)
            settings_of_today = today or args.same_settings
            amp = settings_of_today and (AMP[model] or (today and args.bf16)) and not args.fp32
            run = timer(m, optimizers_for(m, lr, fused=settings_of_today), images, batch, amp=amp,
                        binary=model in BINARY, channels_last=today and args.channels_last)
            variants[label] = (run, batch)
        for run, _ in variants.values():
            run(3)  # warm-up
        seconds: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for label, (run, _) in variants.items():
                seconds[label].append(run(args.steps) / args.steps)
        per_step = {k: statistics.median(v) for k, v in seconds.items()}
        row = {"model": model, "batch": variants["today"][1],
               **{f"{k}_ms_per_step": round(1000 * v, 2) for k, v in per_step.items()},
               **{f"{k}_images_per_s": round(variants[k][1] / v, 1) for k, v in per_step.items()},
               "speedup": round(per_step["baseline"] / per_step["today"], 2),
               "today_bf16_autocast": bf16 and (AMP[model] or args.bf16) and not args.fp32}
        if args.profile:
            row["today_matrix_product_share"] = round(product_share(variants["today"][0], args.steps), 3)
        rows.append(row)
        print(f"{model}: baseline {row['baseline_ms_per_step']} ms/step, today {row['today_ms_per_step']} ms/step: "
              f"{row['speedup']}x", flush=True)
    gemm = gemm_rates()
    print(f"matrix products at {args.threads} thread(s): fp32 {gemm['float32']} GMAC/s, bf16 {gemm['bfloat16']} GMAC/s "
          f"({gemm['bfloat16'] / gemm['float32']:.2f}x)", flush=True)
    record = {"command": "python benchmarks/step_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "commit": git_commit(), "baseline_commit": args.baseline, "device": device_description(),
              "cpu_flags": cpu_flags(), "threads": args.threads, "gemm_gmac_per_s": gemm,
              "today_channels_last": args.channels_last,
              "baseline_settings": "today's" if args.same_settings else "the baseline commit's (fp32, per-tensor Adam)",
              "keep_freed_memory": not args.glibc_default_malloc, "torch": torch.__version__, "date": utc_now(),
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"step-speed-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
