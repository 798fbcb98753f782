"""``rlgen expert|rollouts|gail|bc``: experts, their demonstrations, and imitating them with GAIL or BC.

A full pipeline on CartPole::

    python -m rlgen.run expert --env CartPole-v1
    python -m rlgen.run rollouts --policy runs/expert-CartPole-v1-s0-<time> --env CartPole-v1 --episodes 10 \\
        --out demos.npz
    python -m rlgen.run gail --env CartPole-v1 --demos demos.npz --trajectories 4
    python -m rlgen.run bc --env CartPole-v1 --demos demos.npz --trajectories 4

Every command writes a run directory (config.json, summary.json, ...) and prints where results went. Defaults
come from ``rlgen/configs/imitation.yaml`` (one section per command, with per-env entries).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

from rlgen.cli.options import (
    S,
    add_common_options,
    finite_float,
    nonnegative_float,
    open_run,
    positive_int,
    resolve_config,
)

log = logging.getLogger("rlgen")

ENV_HELP = "gymnasium id (CartPole-v1, Pendulum-v1, Hopper-v5, HalfCheetah-v5, Walker2d-v5, Ant-v5, ...)"
EXPERT_ALGOS = ("ppo", "trpo", "a2c", "sac", "td3")


def add_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=S, help=ENV_HELP)
    if command == "expert":
        parser.add_argument("--algo", choices=EXPERT_ALGOS, default=S,
                            help="SB3 algorithm (default per env: ppo on CartPole, sac on Pendulum and MuJoCo)")
        parser.add_argument("--n-envs", dest="n_envs", type=positive_int, default=S, help="envs stepped together")
        parser.add_argument("--stop-return", dest="stop_return", type=finite_float, default=S, metavar="R",
                            help="stop training once the deterministic return reaches R, checked every "
                                 "stop_check_every steps (default per env: 4500 on HalfCheetah-v5, 3500 on "
                                 "Walker2d-v5 and Ant-v5, else off)")
        add_common_options(parser, budget="steps")
    elif command == "rollouts":
        parser.add_argument("--policy", default=S, metavar="PATH",
                            help="the policy to record: a model zip or an rlgen expert/gail/bc run directory")
        parser.add_argument("--episodes", type=positive_int, default=S, help="whole episodes to record (default 25)")
        parser.add_argument("--stochastic", dest="deterministic", action="store_const", const=False, default=S,
                            help="sample the policy's actions (default: its deterministic actions)")
        add_common_options(parser, budget="steps")
        _set_help(parser, "--steps", "also record until at least this many transitions (whole episodes)")
        _set_help(parser, "--out", "demos file to write (PATH.npz; its run record goes under runs/), or the parent "
                                   "directory of the run directory, which then holds demos.npz (default runs)")
    else:  # gail, bc
        parser.add_argument("--demos", default=S, metavar="FILE",
                            help="demonstrations npz (from 'rlgen rollouts', or the imitation library's npz)")
        parser.add_argument("--trajectories", type=positive_int, default=S, metavar="N",
                            help="use the first N trajectories of the demos (default all)")
        parser.add_argument("--subsample", type=positive_int, default=S, metavar="K",
                            help="keep every K-th (s, a) pair of each trajectory from a random offset "
                                 "(default 20 on MuJoCo, as in the paper; 1 with GAIL's rlgen preset)")
        parser.add_argument("--expert-return", dest="expert_return", type=finite_float, default=S,
                            help="expert return for the normalised return (default: the mean return of all the demos' "
                                 "episodes, also those --trajectories leaves out)")
        if command == "gail":
            parser.add_argument("--preset", choices=("rlgen", "paper"), default=S,
                                help="rlgen: a PPO generator and a discriminator trained on minibatches of all expert "
                                     "pairs (the default on MuJoCo); paper: the paper's TRPO settings (the default "
                                     "on classic control); see rlgen/configs/imitation.yaml")
            parser.add_argument("--algo", choices=("ppo", "trpo"), default=S,
                                help="policy optimiser (default: ppo with the rlgen preset, trpo with paper)")
            parser.add_argument("--n-envs", dest="n_envs", type=positive_int, default=S,
                                help="envs stepped together (default: 8 with the rlgen preset, 10 with paper)")
            parser.add_argument("--reward", choices=("neg_log_1_minus_d", "log_d"), default=S,
                                help="-log(1 - D) (default; episodes end on failure) or log D (episodes end on "
                                     "success)")
            parser.add_argument("--policy-entropy-weight", dest="policy_entropy_weight", type=nonnegative_float,
                                default=S, help="the paper's causal-entropy bonus lambda (default 0)")
            parser.add_argument("--vime-eta", dest="vime_eta", type=nonnegative_float, default=S, metavar="ETA",
                                help="add VIME's exploration bonus, ETA times the normalised information gain, to "
                                     "GAIL's reward (default 0: off)")
            add_common_options(parser, budget="steps")
        else:
            parser.add_argument("--batch-size", dest="batch_size", type=positive_int, default=S,
                                help="expert pairs per gradient step (default 128)")
            add_common_options(parser, budget="epochs")


def _set_help(parser: argparse.ArgumentParser, option: str, text: str) -> None:
    for action in parser._actions:  # argparse has no public way to reword an option added elsewhere
        if option in action.option_strings:
            action.help = text


# -------------------------------------------------------------------------------------------- configuration
# Flags whose value lives in a section of the config: flag -> (section, key).
NESTED_FLAGS = {"gail": {"reward": ("discriminator", "reward"),
                         "policy_entropy_weight": ("discriminator", "policy_entropy_weight"),
                         "vime_eta": ("vime", "eta")}}


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration: the command's section of imitation.yaml, its env entry, --config, flags."""
    from rlgen.common.config import packaged_config
    from rlgen.common.errors import UserError
    from rlgen.envs import resolve_env_id

    section = packaged_config("imitation.yaml")[args.command]
    defaults = dict(section["defaults"], command=args.command)
    nested = {key: vars(args).pop(key) for key in NESTED_FLAGS.get(args.command, {}) if key in vars(args)}
    cfg = resolve_config(args, defaults, section.get("tasks", {}), presets=section.get("presets"))
    for flag, value in nested.items():
        part, key = NESTED_FLAGS[args.command][flag]
        cfg[part] = {**cfg[part], key: value}
    cfg["env_name"] = cfg["env"]
    cfg["env"] = resolve_env_id(cfg["env"])
    if "algo_kwargs" in cfg:
        cfg["algo_kwargs"] = dict(cfg["algo_kwargs"].get(cfg["algo"], {}) or {})
        from rlgen.common.sb3_training import check_algo_kwargs, check_lr_schedule

        check_algo_kwargs(cfg["algo"], cfg["algo_kwargs"])  # before a run directory is made
        check_lr_schedule(cfg)
    if args.command == "expert":
        kwargs = cfg.get("policy_kwargs") or {}
        keyed = bool(kwargs) and set(kwargs) <= set(EXPERT_ALGOS)
        cfg["policy_kwargs"] = dict(kwargs.get(cfg["algo"], {}) or {}) if keyed else dict(kwargs)
        if cfg["algo"] in ("sac", "td3"):
            from gymnasium import spaces

            if not isinstance(_env_spaces(cfg["env"])[1], spaces.Box):
                raise UserError(f"--algo {cfg['algo']} needs continuous (Box) actions; {cfg['env']} has discrete "
                                "actions: use --algo ppo")
    if args.command == "expert" and cfg.get("stop_return") is not None:
        from rlgen.common.sb3_training import stop_check_interval

        stop_check_interval(cfg)  # a bad value fails before the run directory is made
    if "eval_episodes" in cfg and (not isinstance(cfg["eval_episodes"], int) or cfg["eval_episodes"] < 1):
        raise UserError(f"eval_episodes must be a positive integer, got {cfg['eval_episodes']!r}")
    if args.command in ("gail", "bc"):
        allowed = (True, False, "running") if args.command == "gail" else (True, False)  # (BC has no rollouts)
        if cfg["policy_obs_norm"] not in allowed:
            raise UserError(f"policy_obs_norm must be one of {', '.join(map(str, allowed))} for {args.command}, got "
                            f"{cfg['policy_obs_norm']!r}")
        if args.command == "gail":
            _check_discriminator_options(cfg["discriminator"], section["defaults"]["discriminator"])
            _check_vime_options(cfg["vime"])
        elif not (isinstance(cfg["val_fraction"], (int, float)) and 0 <= cfg["val_fraction"] < 1):
            raise UserError(f"val_fraction must be in [0, 1), got {cfg['val_fraction']!r}; fix it in the config file")
        if not cfg.get("demos"):
            raise UserError("no --demos given; record demonstrations with 'rlgen rollouts' and pass the npz file")
        cfg["demos"] = str(Path(cfg["demos"]).expanduser().resolve())
    return cfg


def _check_discriminator_options(options: Any, known: dict[str, Any]) -> None:
    """A typo or a bad value in the config file's ``discriminator`` section fails here, before a run directory
    is made, not as a traceback from the discriminator's constructor."""
    from rlgen.agents.gail.discriminator import ACTIVATIONS, REWARD_TYPES
    from rlgen.common.config import check_known_keys
    from rlgen.common.errors import UserError

    if not isinstance(options, dict):
        raise UserError(f"discriminator must be a mapping of options ({', '.join(known)}), got {options!r}")
    check_known_keys(options, known, "the discriminator section")
    for key, allowed in (("reward", REWARD_TYPES), ("activation", ACTIVATIONS)):
        if options[key] not in allowed:
            raise UserError(f"discriminator {key} {options[key]!r} is not one of {', '.join(allowed)}")
    sizes = options["hidden_sizes"]
    if not (isinstance(sizes, list) and all(isinstance(n, int) and n > 0 for n in sizes)):
        raise UserError(f"discriminator hidden_sizes must be a list of positive integers, got {sizes!r}")


def _check_vime_options(options: Any) -> None:
    """GAIL's ``vime`` section: VIME's keyword arguments, with a finite ``eta >= 0``."""
    import inspect

    from rlgen.agents.vime import VIME
    from rlgen.common.config import check_known_keys
    from rlgen.common.errors import UserError

    if not isinstance(options, dict):
        raise UserError(f"vime must be a mapping of VIME options (eta, ...), got {options!r}")
    known = {k: None for k in inspect.signature(VIME).parameters if k not in ("model", "seed", "extrinsic")}
    check_known_keys(options, known, "the vime section")
    eta = options.get("eta", 0.0)
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta) or eta < 0:
        raise UserError(f"vime eta must be a finite number >= 0, got {eta!r}; fix --vime-eta or the config file")


def _start(args: argparse.Namespace, cfg: dict[str, Any]) -> tuple[Any, dict[str, Any], str]:
    """Open the run directory, seed everything, pick the device."""
    from rlgen.common.device import resolve_device, set_torch_threads
    from rlgen.common.seeding import set_seed

    run_dir = open_run(args, cfg, tag=cfg["env_name"])
    device = str(resolve_device(run_dir.config["device"]))  # a resumed run's own, unless --device moves it
    log.info("run directory: %s", run_dir.path)
    set_seed(run_dir.config["seed"])
    set_torch_threads(run_dir.config.get("torch_threads", 1))
    return run_dir, run_dir.config, device


def _env_spaces(env_id: str) -> tuple[Any, Any]:
    from rlgen.common.sb3_training import make_env

    env = make_env(env_id)
    spaces = (env.observation_space, env.action_space)
    env.close()
    return spaces


def expert_data(cfg: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Load and check the demos, keep the first ``trajectories`` and subsample them (seeded, so a resumed run
    gets the same pairs). Returns ``(demos, obs, actions)``."""
    from rlgen.common.seeding import rng_stream
    from rlgen.imitation.demos import load_demos

    obs_space, act_space = _env_spaces(cfg["env"])
    demos = load_demos(cfg["demos"], cfg["env"], obs_space, act_space)
    chosen = demos.first_episodes(cfg.get("trajectories"))
    # The subset changes with the seed (the original fixes it with RandomState(0)): a multi-seed benchmark then
    # also covers the luck of which pairs were kept.
    obs, actions = chosen.subsample(int(cfg["subsample"]), rng_stream(cfg["seed"], "expert_subsample"))
    return demos, obs, actions


def _start_imitation(args: argparse.Namespace, cfg: dict[str, Any]) -> tuple[Any, dict[str, Any], str, Any, Any, Any]:
    """:func:`_start` for commands that learn from demos: a new run's demos are checked before its directory is
    made (a resumed run uses the demos its saved config names). Returns ``(run_dir, cfg, device, demos, obs,
    actions)``."""
    from rlgen.agents.gail import obs_norm_policy_kwargs

    data = None if "resume" in vars(args) else expert_data(cfg)
    run_dir, cfg, device = _start(args, cfg)
    demos, expert_obs, expert_actions = data if data is not None else expert_data(cfg)
    if not run_dir.resumed:
        if cfg.get("policy_obs_norm"):
            cfg["policy_kwargs"] = {**(cfg.get("policy_kwargs") or {}),
                                    **obs_norm_policy_kwargs(expert_obs, running=cfg["policy_obs_norm"] == "running")}
        cfg["expert_pairs"] = len(expert_obs)
        run_dir.save_config()
    return run_dir, cfg, device, demos, expert_obs, expert_actions


def _expert_return(cfg: dict[str, Any], demos: Any) -> float | None:
    if cfg.get("expert_return") is not None:
        return float(cfg["expert_return"])
    value = float(demos.episode_returns.mean())
    return value if math.isfinite(value) else None


def _fmt(value: float | None, digits: str = ".1f") -> str:
    return "n/a" if value is None else format(value, digits)


# ------------------------------------------------------------------------------------------------- commands
def run(args: argparse.Namespace) -> None:
    {"expert": run_expert, "rollouts": run_rollouts, "gail": run_gail, "bc": run_bc}[args.command](args)


def run_expert(args: argparse.Namespace) -> None:
    from rlgen.common.checkpoint import atomic_write_json
    from rlgen.common.sb3_training import train_sb3
    from rlgen.imitation.evaluation import random_policy_returns

    cfg = resolve(args)
    run_dir, cfg, device = _start(args, cfg)
    summary = train_sb3(run_dir, None, device=device)
    rnd = random_policy_returns(cfg["env"], cfg["eval_episodes"], cfg["seed"])
    target = cfg.get("target_return")
    summary.update(random_return_mean=rnd["return_mean"], target_return=target,
                   meets_target=None if target is None else bool(summary["eval_return_mean"] >= target))
    atomic_write_json(run_dir.path / "summary.json", summary)
    stopped = (f"; stopped at step {summary['steps']:,} on reaching stop_return {summary['stop_return']:g}"
               if summary.get("stopped_early") else "")
    print(f"expert {cfg['algo']} on {cfg['env']}: deterministic return {summary['eval_return_mean']:.1f} "
          f"+- {summary['eval_return_std']:.1f} over {cfg['eval_episodes']} episodes (random policy "
          f"{rnd['return_mean']:.1f}; target {_fmt(target)}{'' if target is None else ', met' if summary['meets_target'] else ', NOT met'}"
          f"{stopped})")
    print(f"results: {run_dir.path} (model.zip, summary.json, config.json, progress.csv, tb/, checkpoints/)")


def run_rollouts(args: argparse.Namespace) -> None:
    import numpy as np

    from rlgen.common.checkpoint import atomic_write_json
    from rlgen.common.device import resolve_device
    from rlgen.common.errors import UserError
    from rlgen.imitation.demos import record_demos, save_demos
    from rlgen.imitation.evaluation import load_policy

    cfg = resolve(args)
    if not cfg.get("policy") and vars(args).get("resume") not in (None, "latest"):
        from rlgen.common.run_dir import saved_run_config

        cfg["policy"] = saved_run_config(Path(args.resume)).get("policy")  # a resumed run's own policy
    if not cfg.get("policy"):
        raise UserError("no --policy given; pass the model.zip or run directory of an 'rlgen expert' run")
    cfg["policy"] = str(Path(cfg["policy"]).expanduser().resolve())
    if str(cfg["out"]).endswith(".npz"):
        cfg["demos_file"] = str(Path(cfg["out"]).expanduser().resolve())
        cfg["out"] = "runs"
        from rlgen.common.run_dir import ensure_writable_dir

        ensure_writable_dir(Path(cfg["demos_file"]).parent)  # before the run directory is made
    policy = load_policy(cfg["policy"], cfg["env"], device=str(resolve_device(cfg["device"])))  # fail early
    run_dir, cfg, _ = _start(args, cfg)
    demos_path = Path(cfg["demos_file"]) if cfg.get("demos_file") else run_dir.path / "demos.npz"
    demos = record_demos(policy, cfg["env"], cfg["episodes"], int(cfg.get("steps", 0)), bool(cfg["deterministic"]),
                         cfg["seed"], source=cfg["policy"])
    try:
        save_demos(demos_path, demos)
    except OSError as exc:
        raise UserError(f"cannot write demos to {demos_path} ({exc.strerror or exc}); pass a writable --out") from exc
    returns = demos.episode_returns
    summary = {"env": cfg["env"], "policy": cfg["policy"], "demos": str(demos_path), "episodes": demos.n_episodes,
               "transitions": demos.n_transitions, "deterministic": bool(cfg["deterministic"]),
               "return_mean": float(returns.mean()), "return_std": float(returns.std()),
               "episode_length_mean": float(np.mean(demos.episode_lengths)),
               "terminated_episodes": int(demos.terminated.sum()), "truncated_episodes": int(demos.truncated.sum())}
    atomic_write_json(run_dir.path / "summary.json", summary)
    print(f"recorded {demos.n_episodes} episodes ({demos.n_transitions} transitions) of {cfg['env']}: return "
          f"{summary['return_mean']:.1f} +- {summary['return_std']:.1f}")
    print(f"demos: {demos_path}")
    print(f"results: {run_dir.path} (config.json, summary.json)")


def run_gail(args: argparse.Namespace) -> None:
    from rlgen.agents.gail import GAIL
    from rlgen.common.checkpoint import atomic_write_json
    from rlgen.common.reward_sum import RewardSum
    from rlgen.common.sb3_training import train_sb3
    from rlgen.imitation.evaluation import imitation_report

    run_dir, cfg, device, demos, expert_obs, expert_actions = _start_imitation(args, resolve(args))
    log.info("GAIL on %s: %d expert (s, a) pairs from %d trajectories (every %dth pair)", cfg["env"],
             len(expert_obs), cfg.get("trajectories") or demos.n_episodes, cfg["subsample"])

    def make_reward_source(model: Any) -> GAIL | RewardSum:
        gail = GAIL(expert_obs, expert_actions, model.observation_space, model.action_space, model=model,
                    seed=cfg["seed"], device=device, **cfg["discriminator"])
        vime = dict(cfg.get("vime") or {})
        eta = float(vime.pop("eta", 0.0))
        if eta == 0:
            return gail
        from rlgen.agents.vime import VIME

        log.info("GAIL's reward plus VIME's exploration bonus (eta %g)", eta)
        bonus = VIME(model, eta=1.0, extrinsic=False, seed=cfg["seed"], **vime)
        return RewardSum({"gail": (1.0, gail), "vime": (eta, bonus)})

    summary = train_sb3(run_dir, make_reward_source, device=device)
    report = imitation_report(None, cfg["env"], cfg["eval_episodes"], cfg["seed"], _expert_return(cfg, demos),
                              policy_eval={"return_mean": summary["eval_return_mean"],
                                           "return_std": summary["eval_return_std"]})
    summary.update(report, trajectories=cfg.get("trajectories") or demos.n_episodes, expert_pairs=len(expert_obs))
    atomic_write_json(run_dir.path / "summary.json", summary)
    _print_report("gail", cfg, summary)
    print(f"results: {run_dir.path} (model.zip, summary.json, config.json, progress.csv, tb/, checkpoints/)")


def _print_report(name: str, cfg: dict[str, Any], summary: dict[str, Any]) -> None:
    print(f"{name} on {cfg['env']}: return {summary['eval_return_mean']:.1f} +- {summary['eval_return_std']:.1f} "
          f"over {summary['eval_episodes']} deterministic episodes; expert {_fmt(summary['expert_return_mean'])}, "
          f"random {summary['random_return_mean']:.1f}; normalised return "
          f"{_fmt(summary['normalised_return'], '.3f')}")


def run_bc(args: argparse.Namespace) -> None:
    import time

    from stable_baselines3 import PPO

    from rlgen.agents.bc import BehaviorCloning
    from rlgen.common.checkpoint import atomic_torch_save, atomic_write, atomic_write_json, load_json, load_torch
    from rlgen.common.logger import make_logger
    from rlgen.common.sb3_training import make_vec_env_for, policy_kwargs_from_config
    from rlgen.imitation.evaluation import evaluate_returns, imitation_report

    run_dir, cfg, device, demos, expert_obs, expert_actions = _start_imitation(args, resolve(args))

    venv = make_vec_env_for(cfg["env"], 1, cfg["seed"])
    model = PPO("MlpPolicy", venv, seed=cfg["seed"], device=device, policy_kwargs=policy_kwargs_from_config(cfg["policy_kwargs"]))
    bc = BehaviorCloning(model, expert_obs, expert_actions, learning_rate=cfg["learning_rate"],
                         batch_size=cfg["batch_size"], entropy_weight=cfg["entropy_weight"],
                         l2_weight=cfg["l2_weight"], val_fraction=cfg["val_fraction"], seed=cfg["seed"])
    ckpt_dir = run_dir.checkpoints
    elapsed_before, resume_epoch = 0.0, None
    if run_dir.resumed and (ckpt_dir / "latest.json").is_file():
        latest = load_json(ckpt_dir / "latest.json", what="checkpoint index")
        state = load_torch(ckpt_dir / latest["state"])
        bc.load_state_dict(state["bc"])
        elapsed_before, resume_epoch = float(state["elapsed"]), bc.epoch
        log.info("resuming %s from epoch %d", run_dir.path, bc.epoch)
    logger = make_logger(run_dir.path, ("bc/neg_log_likelihood", "bc/val_neg_log_likelihood"), resume_epoch)
    start = time.time()

    def save_checkpoint() -> None:
        name = f"bc_{bc.epoch}.pt"
        atomic_torch_save({"bc": bc.state_dict(), "elapsed": elapsed_before + time.time() - start}, ckpt_dir / name)
        previous = load_json(ckpt_dir / "latest.json") if (ckpt_dir / "latest.json").is_file() else None
        atomic_write_json(ckpt_dir / "latest.json", {"step": bc.epoch, "state": name})
        if previous and previous["state"] != name:
            (ckpt_dir / previous["state"]).unlink(missing_ok=True)

    from tqdm import tqdm

    total = int(cfg["epochs"])
    with tqdm(total=total, initial=bc.epoch, unit="epoch", desc="bc", disable=None) as bar:
        while bc.epoch < total:
            metrics = bc.train_epoch()
            bar.update(1)
            if bc.epoch % int(cfg["log_every"]) == 0 or bc.epoch == total:
                for key, value in metrics.items():
                    logger.record(key, value)
                logger.dump(step=bc.epoch)
            if cfg["checkpoint_every"] and bc.epoch % int(cfg["checkpoint_every"]) == 0:
                save_checkpoint()
    save_checkpoint()  # (the last epoch's policy, from which a longer run would go on)
    wall = elapsed_before + time.time() - start
    kept_epoch = bc.restore_best()
    atomic_write(run_dir.path / "model.zip", lambda tmp: model.save(tmp))
    venv.close()

    ev = evaluate_returns(model, cfg["env"], cfg["eval_episodes"], cfg["seed"])
    summary = {"env": cfg["env"], "algo": "bc", "seed": cfg["seed"], "epochs": bc.epoch,
               "wall_clock_s": round(wall, 2), "trajectories": cfg.get("trajectories") or demos.n_episodes,
               "expert_pairs": len(expert_obs), "train_action_accuracy": bc.action_accuracy(expert_obs, expert_actions),
               "kept_epoch": kept_epoch,
               "val_score": float(bc.best_score) if bc.best_policy is not None else None}
    summary.update(imitation_report(model, cfg["env"], cfg["eval_episodes"], cfg["seed"], _expert_return(cfg, demos),
                                    policy_eval=ev))
    summary["eval_returns"] = ev["returns"]
    atomic_write_json(run_dir.path / "summary.json", summary)
    _print_report("bc", cfg, summary)
    print(f"results: {run_dir.path} (model.zip, summary.json, config.json, progress.csv, tb/, checkpoints/)")
