"""The ``rlgen`` command line: ``python -m rlgen.run <command>`` (the console script ``rlgen`` is the same)."""

from __future__ import annotations

import argparse
import difflib
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlgen import __version__
from rlgen.cli.options import add_flags, quote_defaults
from rlgen.common.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage dump), exit code 2, and takes no abbreviated
    option (``--step`` silently meaning ``--steps`` hides typos, and breaks when a new option shares the prefix)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.commands: dict[str, Parser] = {}  # the top-level parser's: each command's, for messages about its options

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def reject(self, unknown: Sequence[str]) -> None:
        """One line for options this (sub)command does not have, with the nearest one it has."""
        known = {s.lstrip("-"): s for action in self._actions for s in action.option_strings}
        first = unknown[0].partition("=")[0]
        near = difflib.get_close_matches(first.lstrip("-"), known, n=1, cutoff=0.7) if first.startswith("-") else []
        self.error(f"unrecognized arguments: {' '.join(unknown)}"
                   + (f"; did you mean {known[near[0]]}?" if near else ""))


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    #: the package module that declares the command's options and runs it: ``flag_groups(command)``,
    #: ``packaged_defaults(command)`` and ``run(command, flags)``
    module: str


COMMANDS: tuple[Command, ...] = (
    Command("vime", "VIME: on-policy RL (PPO/TRPO) with a BNN information-gain bonus", "rlgen.agents.rl_config"),
    Command("ppo", "PPO on an env (the VIME baseline)", "rlgen.agents.rl_config"),
    Command("trpo", "TRPO on an env (the VIME baseline)", "rlgen.agents.rl_config"),
    Command("expert", "train an expert policy for imitation", "rlgen.imitation.config"),
    Command("rollouts", "record an expert's trajectories to an npz file", "rlgen.imitation.config"),
    Command("gail", "GAIL: imitate demonstrations with a learned discriminator reward", "rlgen.imitation.config"),
    Command("bc", "behaviour cloning on demonstrations", "rlgen.imitation.config"),
    Command("gan", "DCGAN with the Improved-GAN techniques", "rlgen.vision.config"),
    Command("ssgan", "semi-supervised GAN", "rlgen.vision.config"),
    Command("infogan", "InfoGAN", "rlgen.vision.config"),
    Command("vae", "VAE with inverse autoregressive flow (and the bidirectional ResNet VAE)", "rlgen.vision.config"),
    Command("pixelcnn", "PixelCNN", "rlgen.vision.config"),
    Command("pixelrnn", "PixelRNN (Row LSTM, Diagonal BiLSTM)", "rlgen.vision.config"),
    Command("bench", "multi-seed benchmark suites: tables and learning curves", "rlgen.bench.options"),
)


def build_parser() -> Parser:
    parser = Parser(prog="rlgen", description="rlgen: reinforcement learning with generative components. "
                    "Each run writes config.json, progress.csv, TensorBoard events and checkpoints to "
                    "runs/<command>-<env or dataset>-s<seed>-<time>/.")
    parser.add_argument("--version", action="version", version=f"rlgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True, parser_class=Parser)
    for command in COMMANDS:
        module = importlib.import_module(command.module)
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        parser.commands[command.name] = p
        for title, flags in module.flag_groups(command.name):
            add_flags(p.add_argument_group(title) if title else p, flags)
        quote_defaults(p, *module.packaged_defaults(command.name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command's parser: its --help lists the options it does have
        parser.commands[args.command].reject(unknown)
    from rlgen.common.logger import setup_logging
    from rlgen.common.memory import keep_freed_memory
    from rlgen.common.run_dir import discard_unstarted_runs

    setup_logging()
    keep_freed_memory()  # large per-step tensors stop costing a page fault per 4 KiB (rlgen.common.memory)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a scheduler or `kill` stopping the run) is Ctrl-C: runs checkpoint where they are and exit 130.
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    flags = {key: value for key, value in vars(args).items() if key != "command"}  # what the user typed
    module = importlib.import_module(next(c.module for c in COMMANDS if c.name == args.command))
    try:
        with discard_unstarted_runs():
            module.run(args.command, flags)
    except UserError as exc:
        print(f"rlgen {args.command}: error: {exc}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt as exc:
        how = getattr(exc, "how_to_go_on", "continue the run with --resume")  # (rlgen.common.interrupts.Interrupted)
        print(f"rlgen {args.command}: interrupted; {how}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
