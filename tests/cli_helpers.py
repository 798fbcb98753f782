"""Running the CLI in tests: in-process (fast) or as a real subprocess (end to end)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rlgen.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def rlgen(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m rlgen.run ARGS`` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "rlgen.run", *args], capture_output=True, text=True, cwd=cwd,
                          check=False, env=ENV, timeout=timeout)


def fails_cleanly(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI in-process: exit code 2 and a single ``error:`` line on stderr containing ``expected``."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse errors
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if "error:" in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in "\n".join(err), err
    for word in expected:
        assert word in lines[0], lines[0]
    return lines[0]


def succeeds(capsys, argv: list[str]) -> str:
    """Run the CLI in-process; it must exit 0. Returns its stdout."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    return captured.out


def tensorboard_steps(folder: Path, tag: str) -> list[int]:
    """The steps of ``tag``'s scalars over every event file in ``folder``, in the order written."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    steps = []
    for path in sorted(folder.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        for record in RawEventFileLoader(str(path)).Load():
            event = Event.FromString(record)
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps
