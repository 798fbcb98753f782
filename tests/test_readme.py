"""README.md stays true: its two commands are the ones CI runs, it stays short, and its Python snippets run (each
with its ``steps = ...  # budget`` line cut to a smoke budget; README quotes none of their printed figures)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ENV

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
BUDGET = re.compile(r"^steps = [\d_]+  # budget$", flags=re.MULTILINE)


def test_readme_is_short_and_starts_with_the_commands_ci_runs():
    assert len(README.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", README, flags=re.DOTALL)[:2]
    assert len(commands) == 2 and all(command in ci for command in commands)


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_readme_python_snippet_runs(snippet, tmp_path):
    assert len(BUDGET.findall(snippet)) <= 1
    code = BUDGET.sub("steps = 5_000  # budget", snippet)
    script = tmp_path / "snippet.py"
    script.write_text(code)
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
