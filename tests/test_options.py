"""Options declared once (rlgen.common.options): the flags, a config file's checks and a Python caller's checks all
follow the declaration."""

from __future__ import annotations

import math

import pytest

from rlgen.cli import COMMANDS, build_parser
from rlgen.common.errors import UserError
from rlgen.common.options import Flag, argv_of, check_value, parse_value


@pytest.mark.parametrize("flag,text,words", [
    (Flag("n", "", kind=int, minimum=1), "0", "positive integer"),
    (Flag("n", "", kind=int, minimum=1), "10000000000000", "up to"),
    (Flag("n", "", kind=int, minimum=0), "-1", ">= 0"),
    (Flag("n", "", kind=int), "2.5", "an integer"),
    (Flag("x", "", kind=float), "nan", "finite"),
    (Flag("x", "", kind=float, minimum=0, strict=True), "0", "> 0"),
    (Flag("p", "", kind=float, minimum=0, maximum=1), "1.5", "between 0 and 1"),
    (Flag("c", "", choices=("a", "b")), "z", "one of a, b"),
])
def test_a_value_outside_its_declaration_is_refused_with_the_reason(flag, text, words):
    with pytest.raises(ValueError, match=words):
        parse_value(flag, text)


def test_a_whole_number_written_as_a_float_is_an_integer():
    steps = Flag("steps", "", kind=int, minimum=1)
    assert parse_value(steps, "1e6") == 1_000_000 and parse_value(steps, "2.5e5") == 250_000
    for text in ("1e-3", "inf", "1.5e0"):
        with pytest.raises(ValueError, match="an integer"):
            parse_value(steps, text)


def test_config_file_values_meet_the_same_rules_in_the_files_types():
    check_value(Flag("x", "", kind=float, minimum=0), 0.5)
    check_value(Flag("xs", "", kind=int, minimum=1, many=True), [1, 2])
    # numbers YAML leaves as text (3e-4, 1e6) or as floats (2.0) come back in the flag's type
    assert check_value(Flag("lr", "", kind=float, minimum=0), "3e-4") == 3e-4
    assert check_value(Flag("steps", "", kind=int, minimum=1), "1e6") == 1_000_000
    assert check_value(Flag("n", "", kind=int, minimum=1), 2.0) == 2 and check_value(Flag("n", "", kind=int), 2) == 2
    with pytest.raises(ValueError, match="an integer"):
        check_value(Flag("n", "", kind=int), 2.5)
    for flag, value in [(Flag("on", "", kind=bool), 1), (Flag("n", "", kind=int), True),
                        (Flag("xs", "", kind=int, many=True), 3), (Flag("n", "", kind=int), [3]),
                        (Flag("x", "", kind=float), math.inf)]:
        with pytest.raises(ValueError):
            check_value(flag, value)


OPTIONS = {  # a few options of each family, by key, as a Python caller gives them
    "gan": {"dataset": "mnist", "lr": 0.001, "amp": False, "minibatch_discrimination": 100, "seed": 3},
    "ssgan": {"dataset": "mnist", "d_hidden": [10, 5], "g_hidden": [], "labels": 20, "evaluate": False},
    "pixelcnn": {"dataset": "binarized_mnist", "binarize": "none", "resume": "latest", "max_minutes": 1.5},
    "gail": {"env": "Hopper-v5", "demos": "d.npz", "discriminator.reward": "log_d", "vime.eta": 0.5, "steps": 10},
    "rollouts": {"env": "CartPole-v1", "policy": "p.zip", "deterministic": False},
    "vime": {"env": "SparseHalfCheetah", "vime.eta": 0.01, "obs_norm": False, "n_envs": 2},
    "bench": {"suite": "smoke", "ray": "auto", "dry_run": True, "budget_scale": 0.5, "seeds": "0-2"},
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_argv_of_options_parses_back_to_the_same_options(command):
    """What a benchmark prints as its command line gives the options it ran with."""
    import importlib

    options = OPTIONS[command]
    module = importlib.import_module(next(c.module for c in COMMANDS if c.name == command))
    declared = [flag for _, group in module.flag_groups(command) for flag in group]
    parsed = vars(build_parser().parse_args([command, *argv_of(options, declared)]))
    parsed.pop("command")
    assert parsed == options


def test_a_python_callers_options_are_checked_like_flags():
    from rlgen.vision.config import resolve

    with pytest.raises(UserError, match="lr: must be a finite number"):
        resolve("gan", {"dataset": "mnist", "lr": math.nan})
    with pytest.raises(UserError, match="unknown option.*lerning_rate"):
        resolve("gan", {"dataset": "mnist", "lerning_rate": 0.1})
    assert resolve("gan", {"dataset": "mnist", "lr": 0.001})["lr"] == 0.001


def test_every_commands_help_renders_with_its_option_texts(capsys):
    """argparse %-formats help texts: an option whose text has a literal % (e.g. InfoGAN's "10%") must render."""
    parser = build_parser()
    for command in COMMANDS:
        with pytest.raises(SystemExit):
            parser.parse_args([command.name, "--help"])
    assert "zoomed by up to 10%" in " ".join(capsys.readouterr().out.split())


def test_a_config_files_numbers_reach_the_run_in_their_options_types(tmp_path):
    """PyYAML reads 3e-4 and 1e6 as text: the run gets numbers, not strings that fail later."""
    from rlgen.agents.rl_config import resolve as resolve_rl
    from rlgen.vision.config import resolve as resolve_vision

    file = tmp_path / "opts.yaml"
    file.write_text("n_envs: 2.0\nsteps: 1e6\n")
    cfg = resolve_rl("ppo", {"env": "CartPole-v1", "config": str(file)})
    assert (cfg["n_envs"], cfg["steps"]) == (2, 1_000_000) and isinstance(cfg["n_envs"], int)
    file.write_text("lr: 3e-4\nbatch_size: 1e2\n")
    cfg = resolve_vision("gan", {"dataset": "mnist", "config": str(file)})
    assert (cfg["lr"], cfg["batch_size"]) == (3e-4, 100) and isinstance(cfg["batch_size"], int)
