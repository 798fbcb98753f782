"""The ``rlgen`` command line: ``python -m rlgen.run <command>`` (the console script ``rlgen`` is the same)."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from rlgen import __version__
from rlgen.cli.options import quote_defaults
from rlgen.common.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage dump), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str  # module with add_arguments(command, parser) and run(args)


COMMANDS: tuple[Command, ...] = (
    Command("vime", "VIME: on-policy RL (PPO/TRPO) with a BNN information-gain bonus", "rlgen.cli.rl"),
    Command("ppo", "PPO on an env (the VIME baseline)", "rlgen.cli.rl"),
    Command("trpo", "TRPO on an env (the VIME baseline)", "rlgen.cli.rl"),
    Command("expert", "train an expert policy for imitation", "rlgen.cli.imitation"),
    Command("rollouts", "record an expert's trajectories to an npz file", "rlgen.cli.imitation"),
    Command("gail", "GAIL: imitate demonstrations with a learned discriminator reward", "rlgen.cli.imitation"),
    Command("bc", "behaviour cloning on demonstrations", "rlgen.cli.imitation"),
    Command("gan", "DCGAN with the Improved-GAN techniques", "rlgen.cli.vision"),
    Command("ssgan", "semi-supervised GAN", "rlgen.cli.vision"),
    Command("infogan", "InfoGAN", "rlgen.cli.vision"),
    Command("vae", "VAE with inverse autoregressive flow (and the bidirectional ResNet VAE)", "rlgen.cli.vision"),
    Command("pixelcnn", "PixelCNN", "rlgen.cli.vision"),
    Command("pixelrnn", "PixelRNN (Row LSTM, Diagonal BiLSTM)", "rlgen.cli.vision"),
    Command("bench", "multi-seed benchmark suites: tables and learning curves", "rlgen.cli.bench"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rlgen", description="rlgen: reinforcement learning with generative components. "
                    "Each run writes config.json, progress.csv, TensorBoard events and checkpoints to "
                    "runs/<command>-<env or dataset>-s<seed>-<time>/.")
    parser.add_argument("--version", action="version", version=f"rlgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True, parser_class=Parser)
    for command in COMMANDS:
        module = importlib.import_module(command.module)
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        module.add_arguments(command.name, p)
        if hasattr(module, "packaged_defaults"):
            quote_defaults(p, *module.packaged_defaults(command.name))
        p.set_defaults(handler=module.run, parser=p)  # (the parser checks --config files' values too)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from rlgen.common.logger import setup_logging
    from rlgen.common.memory import keep_freed_memory
    from rlgen.common.run_dir import discard_unstarted_runs

    setup_logging()
    keep_freed_memory()  # large per-step tensors stop costing a page fault per 4 KiB (rlgen.common.memory)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a scheduler or `kill` stopping the run) is Ctrl-C: runs checkpoint where they are and exit 130.
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        with discard_unstarted_runs():
            args.handler(args)
    except UserError as exc:
        print(f"rlgen {args.command}: error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print(f"rlgen {args.command}: interrupted; continue the run with --resume", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
