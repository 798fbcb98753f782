"""Suite files: a grid of ``command x env (or dataset) x options x seed``, expanded into jobs.

A suite is a YAML file under ``benchmarks/suites/`` (format in ``benchmarks/README.md``)::

    name: vime-sparse
    description: VIME against its TRPO baseline on the sparse tasks
    metric: train_return_mean_last_100      # summary.json key that is the score (default eval_return_mean)
    curve: rollout/ep_rew_mean              # progress.csv column plotted against `step`
    cells:
      - command: {vime: {algo: trpo}, trpo: {}}   # a list, or a mapping name -> extra args for that name
        label: {vime: VIME-TRPO, trpo: TRPO}      # a template ("{command}-{env}") or a mapping command -> label
        env: {SparseMountainCar: {steps: 200000}, SparseHalfCheetah: {steps: 2000000}}
        args: {n_envs: 10}                        # flags of the command (n_envs -> --n-envs)
        grid: {eta: [0.0001, 0.001]}              # extra axes; each value is a column of the tables
        seeds: 5                                  # 0..4, or a list

A cell may name an ``id``; another cell's args may then use ``{run:ID}``, the run directory of that cell's job
with the same env/dataset and seed (or its first seed), which runs first (e.g. GAIL's demos come from a
``rollouts`` job that records an ``expert`` job's policy).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlgen.common.errors import UserError
from rlgen.common.resolve import MAX_SEED

SUITE_KEYS = {"name", "description", "metric", "curve", "higher_is_better", "normalize", "sparse", "cells"}
CELL_KEYS = {"id", "command", "env", "dataset", "args", "grid", "seeds", "shared", "label", "metric", "curve",
             "higher_is_better", "normalize", "sparse", "resources"}
# The runner sets these itself on every job.
RESERVED_ARGS = {"seed", "out", "resume", "env", "dataset"}
BUDGET_ARGS = ("steps", "epochs")
DEFAULT_METRIC = "eval_return_mean"
DEFAULT_CURVE = "rollout/ep_rew_mean"
RUN_REF = re.compile(r"\{run:([A-Za-z0-9_.-]+)\}")


def suites_dir() -> Path:
    """``benchmarks/suites`` of the working directory, else of the source checkout rlgen is installed from."""
    local = Path("benchmarks/suites")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[2] / "benchmarks" / "suites"


def available_suites() -> list[str]:
    folder = suites_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


@dataclass
class Job:
    """One run of one command: the unit the runner schedules, retries and skips once finished."""

    id: str
    cell: str
    command: str
    task_key: str | None  # "env", "dataset" or None (the command takes neither)
    task: str | None
    label: str
    params: dict[str, Any]  # the values of the cell's grid axes: the columns a table splits on
    seed: int
    args: dict[str, Any]  # flags, dash-less (n_envs -> --n-envs); strings may hold {run:JOB_ID}
    metric: str = DEFAULT_METRIC
    curve: str | None = DEFAULT_CURVE
    higher_is_better: bool = True
    normalize: dict[str, Any] | None = None
    sparse: bool = False  # report the success rate and steps to the first reward
    resources: dict[str, Any] = field(default_factory=dict)
    deps: tuple[str, ...] = ()

    @property
    def task_name(self) -> str:
        return self.task if self.task is not None else "-"

    def argv(self, dep_run_dirs: Mapping[str, str] | None = None) -> list[str]:
        """``<command> --env E --flag value ... --seed S``, without ``--out``/``--resume`` (the executor adds
        them). ``{run:JOB_ID}`` becomes ``dep_run_dirs[JOB_ID]`` (a path under ``{runs}``, which the executor
        replaces with its own runs folder: a Ray worker's differs from the driver's)."""
        dep_run_dirs = dep_run_dirs or {}

        def subst(text: str) -> str:
            def one(match: re.Match) -> str:
                if match.group(1) not in dep_run_dirs:
                    raise UserError(f"job {self.id} needs the run directory of {match.group(1)}, which has none")
                return dep_run_dirs[match.group(1)]
            return RUN_REF.sub(one, text)

        argv = [self.command]
        if self.task_key is not None:
            argv += [f"--{self.task_key}", str(self.task)]
        for key, value in self.args.items():
            argv += _flag(key, value, subst)
        return argv + ["--seed", str(self.seed)]

    def describe(self) -> str:
        """The job's command line as a person would type it (for --dry-run)."""
        shown = {dep: f"<run dir of {dep}>" for dep in self.deps}
        return "rlgen " + " ".join(_quote(a) for a in self.argv(shown))


@dataclass
class Suite:
    name: str
    description: str
    path: Path | None
    raw: dict[str, Any]
    jobs: list[Job]
    warnings: list[str]


def _flag(key: str, value: Any, subst) -> list[str]:
    name = "--" + key.replace("_", "-")
    if value is None:
        return []
    if value is True:
        return [name]
    if value is False:
        return ["--no-" + key.replace("_", "-")]
    if isinstance(value, (list, tuple)):
        return [name, *(subst(str(v)) for v in value)]
    if isinstance(value, Mapping):
        raise UserError(f"arg {key!r} is a mapping; flags take plain values")
    return [name, subst(str(value))]


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_./:=,+-]+", text) else "'" + text.replace("'", "'\\''") + "'"


def _slug(text: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", str(text)).strip("-") or "x"


# ------------------------------------------------------------------------------------------------ loading
def find_suite(name_or_path: str) -> Path:
    """A suite file: a path, or a name under ``benchmarks/suites/``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = suites_dir() / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = available_suites()
    raise UserError(f"no suite {name_or_path!r}: not a file, and not one of {', '.join(names) or '(none found)'} "
                    f"in {suites_dir()}")


def read_suite_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"suite file {path} could not be read ({first}); fix its YAML") from exc
    if not isinstance(data, dict):
        raise UserError(f"suite file {path} must be a mapping with `name` and `cells`")
    return data


def load_suite(name_or_path: str, seeds: list[int] | None = None, budget_scale: float = 1.0,
               extra_args: Mapping[str, Any] | None = None) -> Suite:
    """Read and expand a suite file (see :func:`expand`)."""
    path = find_suite(name_or_path)
    return expand(read_suite_file(path), path, seeds, budget_scale, extra_args)


# ---------------------------------------------------------------------------------------------- expansion
def _axis(value: Any, what: str, where: str) -> list[tuple[Any, dict[str, Any]]]:
    """A grid axis: a value, a list of values, or a mapping value -> extra args."""
    if value is None:
        return [(None, {})]
    if isinstance(value, Mapping):
        out = []
        for k, v in value.items():
            if v is not None and not isinstance(v, Mapping):
                raise UserError(f"{where}: `{what}` maps {k!r} to {v!r}; map each {what} to a mapping of args")
            out.append((k, dict(v or {})))
        return out
    if isinstance(value, (list, tuple)):
        return [(v, {}) for v in value]
    return [(value, {})]


def _seeds(value: Any, where: str) -> list[int]:
    if value is None:
        return [0]
    if isinstance(value, bool):
        raise UserError(f"{where}: seeds must be a count or a list of integers")
    if isinstance(value, int):
        if value <= 0:
            raise UserError(f"{where}: seeds must be positive, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return list(value)
    raise UserError(f"{where}: seeds must be a count or a non-empty list of integers, got {value!r}")


def _check_keys(data: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{where} has unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")


def _label(template: Any, command: str, fields: Mapping[str, Any], where: str) -> str:
    if isinstance(template, Mapping):
        template = template.get(command, command)
    if template is None:
        return command
    try:
        return str(template).format(command=command, **{k: v for k, v in fields.items() if v is not None})
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"{where}: label {template!r} names an unknown field ({exc}); use command, env, "
                        "dataset, task or a grid key") from exc


def _scale_budget(args: dict[str, Any], scale: float) -> bool:
    """Multiply ``steps``/``epochs`` by ``scale`` (at least 1); False when the job has no explicit budget."""
    found = False
    for key in BUDGET_ARGS:
        if isinstance(args.get(key), (int, float)) and not isinstance(args[key], bool):
            args[key] = max(1, round(args[key] * scale))
            found = True
    return found


def _cell_order(cells: list[dict[str, Any]], ids: list[str]) -> list[int]:
    """Cells in an order where every cell comes after the cells its ``{run:ID}`` args refer to."""
    refs = []
    for i, cell in enumerate(cells):
        text = json.dumps([cell.get("args"), cell.get("command"), cell.get("env"), cell.get("dataset"),
                           cell.get("grid")], default=str)
        wanted = set(RUN_REF.findall(text))
        for ref in wanted:
            if ref not in ids:
                raise UserError(f"cell {ids[i]!r} refers to {{run:{ref}}}, but no cell has id {ref!r}")
        refs.append({ids.index(r) for r in wanted})
    order: list[int] = []
    visiting: set[int] = set()

    def visit(i: int) -> None:
        if i in order:
            return
        if i in visiting:
            raise UserError(f"cells refer to each other in a cycle (through {ids[i]!r})")
        visiting.add(i)
        for j in sorted(refs[i]):
            visit(j)
        visiting.discard(i)
        order.append(i)

    for i in range(len(cells)):
        visit(i)
    return order


def expand(data: Mapping[str, Any], path: Path | None = None, seeds: list[int] | None = None,
           budget_scale: float = 1.0, extra_args: Mapping[str, Any] | None = None) -> Suite:
    """Expand a suite mapping into jobs.

    ``seeds`` replaces the seeds of every cell not marked ``shared: true`` (shared cells, e.g. the one expert
    that every GAIL seed imitates, keep theirs). ``budget_scale`` multiplies each job's ``steps``/``epochs``.
    ``extra_args`` (e.g. ``{"device": "cuda"}``) are added to every job.
    """
    where = str(path) if path else "suite"
    _check_keys(data, SUITE_KEYS, where)
    if not data.get("name") or not isinstance(data.get("cells"), list) or not data["cells"]:
        raise UserError(f"{where} needs a `name` and a non-empty list of `cells`")
    if budget_scale <= 0:
        raise UserError(f"--budget-scale must be positive, got {budget_scale}")
    name = str(data["name"])
    cells = data["cells"]
    for i, cell in enumerate(cells):
        if not isinstance(cell, Mapping):
            raise UserError(f"{where}: cell {i + 1} must be a mapping with at least `command`")
        _check_keys(cell, CELL_KEYS, f"{where}: cell {i + 1}")
        if not cell.get("command"):
            raise UserError(f"{where}: cell {i + 1} has no `command`")
        if cell.get("env") is not None and cell.get("dataset") is not None:
            raise UserError(f"{where}: cell {i + 1} names both `env` and `dataset`; a command takes one")
    ids = [str(cell.get("id", f"cell{i + 1}")) for i, cell in enumerate(cells)]
    if len(set(ids)) != len(ids):
        raise UserError(f"{where}: two cells have the same id")

    jobs_by_cell: dict[str, list[Job]] = {}
    warnings: list[str] = []
    for i in _cell_order(cells, ids):
        cell, cell_id = cells[i], ids[i]
        cell_where = f"{where}: cell {cell_id!r}"
        task_key = "env" if cell.get("env") is not None else "dataset" if cell.get("dataset") is not None else None
        grid = cell.get("grid") or {}
        if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
            raise UserError(f"{cell_where}: `grid` maps option names to non-empty lists of values")
        base_args = dict(cell.get("args") or {})
        cell_seeds = _seeds(cell.get("seeds"), cell_where)
        if seeds is not None and not cell.get("shared"):
            cell_seeds = list(seeds)
        jobs: list[Job] = []
        for (command, cmd_args), (task, task_args), values, seed in itertools.product(
                _axis(cell["command"], "command", cell_where), _axis(cell.get(task_key) if task_key else None,
                                                                     task_key or "env", cell_where),
                itertools.product(*grid.values()), cell_seeds):
            params = dict(zip(grid.keys(), values))
            args = {**base_args, **cmd_args, **task_args, **params, **(extra_args or {})}
            bad = sorted(RESERVED_ARGS & set(args))
            if bad:
                raise UserError(f"{cell_where}: args must not set {', '.join(bad)} (the runner sets "
                                "--seed, --out, --resume; use the cell's env/dataset and seeds)")
            for arg, value in args.items():
                if isinstance(value, Mapping):
                    raise UserError(f"{cell_where}: arg {arg!r} is a mapping; flags take plain values")
            has_budget = _scale_budget(args, budget_scale) if budget_scale != 1 else True
            if not has_budget:
                warnings.append(f"{cell_id}/{command}: no steps/epochs in the suite, so --budget-scale leaves "
                                "its budget at the command's default")
            args, deps = _resolve_refs(args, task, seed, jobs_by_cell, cell_where)
            fields = {"env": task if task_key == "env" else None, "dataset": task if task_key == "dataset" else None,
                      "task": task, **params}
            label = _label(cell.get("label"), str(command), fields, cell_where)
            fingerprint = json.dumps({"command": command, "task_key": task_key, "task": task, "args": args,
                                      "seed": seed}, sort_keys=True, default=str)
            digest = hashlib.sha1(fingerprint.encode()).hexdigest()[:6]
            parts = [_slug(label)] + ([_slug(task)] if task is not None else [])
            parts += [f"{_slug(k)}{_slug(v)}" for k, v in params.items()]
            job_id = "-".join(parts) + f"-s{seed}-{digest}"
            jobs.append(Job(
                id=job_id, cell=cell_id, command=str(command), task_key=task_key,
                task=None if task is None else str(task), label=label, params=params, seed=int(seed), args=args,
                metric=str(cell.get("metric", data.get("metric", DEFAULT_METRIC))),
                curve=cell.get("curve", data.get("curve", DEFAULT_CURVE)),
                higher_is_better=bool(cell.get("higher_is_better", data.get("higher_is_better", True))),
                normalize=cell.get("normalize", data.get("normalize")),
                sparse=bool(cell.get("sparse", data.get("sparse", False))),
                resources=dict(cell.get("resources") or {}), deps=deps))
        jobs_by_cell[cell_id] = jobs

    ordered = [job for cell_id in ids for job in jobs_by_cell[cell_id]]
    seen: dict[str, Job] = {}
    for job in ordered:
        if job.id in seen:
            raise UserError(f"{where}: two cells make the same job {job.id} (same command, task, args and seed)")
        seen[job.id] = job
    return Suite(name=name, description=str(data.get("description", "")).strip(), path=path, raw=dict(data),
                 jobs=ordered, warnings=sorted(set(warnings)))


def _resolve_refs(args: dict[str, Any], task: Any, seed: int, jobs_by_cell: Mapping[str, list[Job]],
                  where: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """``{run:CELL}`` -> ``{run:JOB_ID}`` of that cell's job for the same task and seed (else its first seed)."""
    deps: list[str] = []

    def pick(cell_id: str) -> str:
        candidates = [j for j in jobs_by_cell[cell_id] if j.task == (None if task is None else str(task))
                      or j.task is None]
        if not candidates:
            raise UserError(f"{where}: {{run:{cell_id}}} has no job for {task!r} in cell {cell_id!r}")
        same_seed = [j for j in candidates if j.seed == seed]
        chosen = same_seed or [j for j in candidates if j.seed == candidates[0].seed]
        if len(chosen) > 1:
            raise UserError(f"{where}: {{run:{cell_id}}} is ambiguous: cell {cell_id!r} has {len(chosen)} jobs "
                            f"for {task!r} and seed {seed} (a grid); refer to a cell without one")
        deps.append(chosen[0].id)
        return "{run:" + chosen[0].id + "}"

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return RUN_REF.sub(lambda m: pick(m.group(1)), value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    resolved = {k: walk(v) for k, v in args.items()}
    return resolved, tuple(dict.fromkeys(deps))


MAX_SEED_COUNT = 1000  # (a count is the seeds 0..count-1, listed)


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``0,1,2``, a range ``0-4`` (inclusive), or a count ``5`` (seeds 0..4)."""
    try:
        if re.fullmatch(r"\d+", text.strip()):
            count = int(text)
            if not 0 < count <= MAX_SEED_COUNT:
                raise ValueError
            return list(range(count))
        out: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if re.fullmatch(r"\d+-\d+", part):
                lo, hi = (int(x) for x in part.split("-"))
                if not 0 <= hi - lo < MAX_SEED_COUNT:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            elif re.fullmatch(r"\d+", part):
                out.append(int(part))
            else:
                raise ValueError
        if max(out) > MAX_SEED:
            raise ValueError
        return list(dict.fromkeys(out))
    except ValueError:
        raise UserError(f"--seeds {text!r}: give a count from 1 to {MAX_SEED_COUNT} (5), a list (0,1,2) or a range "
                        f"(0-4) of seeds from 0 to {MAX_SEED}") from None
