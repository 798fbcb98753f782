"""Demonstrations: the ``.npz`` file ``rlgen rollouts`` writes and ``rlgen gail|bc`` read.

**Format, version 1.** One :func:`numpy.savez_compressed` archive of plain arrays (no object arrays), so it
loads with ``np.load(path, allow_pickle=False)``. It holds ``N`` transitions of ``E`` whole episodes, stored
episode after episode:

==================  ==========================================  ================================================
key                 shape, dtype                                meaning
==================  ==========================================  ================================================
``format_version``  ``()`` int64                                ``1``
``env_id``          ``()`` str                                  gymnasium id the demos were recorded on
``obs``             ``(N, *obs_shape)`` float32                 observation :math:`s_t` the action was taken in
``next_obs``        ``(N, *obs_shape)`` float32                 :math:`s_{t+1}`; at an episode's last step the
                                                                env's final observation (not the next reset)
``actions``         ``(N, *act_shape)`` float32 (``Box``)       action :math:`a_t` as executed (within bounds)
                    or ``(N,)`` int64 (``Discrete``)
``rewards``         ``(N,)`` float32                            the env's reward :math:`r_t`
``terminated``      ``(N,)`` bool                               true at the last step of an episode that ended
                                                                in a terminal state
``truncated``       ``(N,)`` bool                               true at the last step of an episode cut off by a
                                                                time limit
``episode_starts``  ``(E,)`` int64                              index of each episode's first transition:
                                                                episode ``i`` is ``[starts[i], starts[i+1])``
``source``          ``()`` str, optional                        what produced the demos (e.g. the policy path)
==================  ==========================================  ================================================

:func:`load_demos` also reads the npz trajectories of the `imitation` library (HumanCompatibleAI; the format of
``imitation.data.types.save`` / ``serialize.save`` before its HuggingFace-datasets format): ``obs`` holds each
trajectory's ``len + 1`` observations back to back, ``acts`` the actions, ``indices`` the split points
(cumulative lengths), ``terminal`` one flag per trajectory and ``rews`` the rewards (optional). Its ``infos``
object array is never read, so nothing is unpickled. Such files carry no env id; they are checked against the
env's spaces only, and a trajectory whose ``terminal`` is false is taken as truncated.

Every problem with a file (missing, not an npz, arrays missing or of the wrong shape, recorded on another env)
is a one-line :class:`~rlgen.common.errors.UserError`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from rlgen.common.checkpoint import atomic_write
from rlgen.common.errors import UserError

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "env_id", "obs", "next_obs", "actions", "rewards", "terminated", "truncated",
                 "episode_starts")
IMITATION_KEYS = ("obs", "acts", "indices", "terminal")


@dataclass(frozen=True)
class Demonstrations:
    """Expert transitions of whole episodes (see the module docstring for what each array holds)."""

    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_starts: np.ndarray
    env_id: str = ""
    source: str = ""
    has_rewards: bool = field(default=True, compare=False)

    # ----------------------------------------------------------------------------------------------- shape
    @property
    def n_transitions(self) -> int:
        return len(self.obs)

    @property
    def n_episodes(self) -> int:
        return len(self.episode_starts)

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(np.append(self.episode_starts, self.n_transitions))

    @property
    def episode_index(self) -> np.ndarray:
        """The episode each transition belongs to, shape ``(N,)``."""
        return np.repeat(np.arange(self.n_episodes), self.episode_lengths)

    @property
    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode (NaN when the file had no rewards)."""
        if not self.has_rewards:
            return np.full(self.n_episodes, np.nan)
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts) if self.n_transitions else \
            np.zeros(0)

    # ----------------------------------------------------------------------------------------- selection
    def first_episodes(self, n: int | None) -> Demonstrations:
        """The first ``n`` episodes (all of them for ``None``), as the GAIL paper limits its datasets."""
        if n is None or n == self.n_episodes:
            return self
        if n <= 0:
            raise UserError(f"the number of trajectories must be positive, got {n}")
        if n > self.n_episodes:
            raise UserError(f"demos{self._where()} hold {self.n_episodes} trajectories, fewer than the {n} asked "
                            f"for; lower --trajectories or record more with 'rlgen rollouts --episodes {n}'")
        end = int(self.episode_starts[n])
        return replace(self, **{k: getattr(self, k)[:end] for k in _PER_TRANSITION}, episode_starts=self.episode_starts[:n])

    def subsample(self, every: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Every ``every``-th ``(s, a)`` pair of each episode from a random offset in ``[0, every)`` drawn per
        episode, as in the GAIL paper (``every=20`` on MuJoCo). Returns ``(obs, actions)``."""
        if every < 1:
            raise UserError(f"subsample must be a positive integer, got {every}")
        episode = self.episode_index
        step_in_episode = np.arange(self.n_transitions) - self.episode_starts[episode]
        offsets = rng.integers(0, every, size=self.n_episodes)
        shifted = step_in_episode - offsets[episode]
        keep = (shifted >= 0) & (shifted % every == 0)
        if not keep.any():
            raise UserError(f"subsampling every {every}th pair left no expert data; lower subsample")
        return self.obs[keep], self.actions[keep]

    # ------------------------------------------------------------------------------------------ checking
    def _where(self) -> str:
        return f" in {self.source}" if self.source else ""

    def validate(self) -> None:
        """Check that the arrays are consistent with each other (not yet with an env)."""
        n = self.n_transitions
        where = self._where()
        if n == 0:
            raise UserError(f"demos{where} hold no transitions; record them with 'rlgen rollouts'")
        for key in _PER_TRANSITION:
            if len(getattr(self, key)) != n:
                raise UserError(f"demos{where} are inconsistent: {key} has {len(getattr(self, key))} rows, obs has {n}")
        if self.next_obs.shape != self.obs.shape:
            raise UserError(f"demos{where} are inconsistent: next_obs shape {self.next_obs.shape} != obs shape "
                            f"{self.obs.shape}")
        for key in ("rewards", "terminated", "truncated"):
            if getattr(self, key).ndim != 1:
                raise UserError(f"demos{where}: {key} must be one value per transition, got shape "
                                f"{getattr(self, key).shape}")
        starts = self.episode_starts
        if starts.ndim != 1 or len(starts) == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= n:
            raise UserError(f"demos{where}: episode_starts must start at 0 and increase strictly below {n}")
        for key in ("obs", "next_obs", "actions", "rewards"):  # one NaN would poison GAIL's and BC's statistics
            if np.issubdtype(getattr(self, key).dtype, np.floating) and not np.all(np.isfinite(getattr(self, key))):
                raise UserError(f"demos{where} contain NaN or infinite values in {key}; record them again with "
                                "'rlgen rollouts'")
        last = np.zeros(n, dtype=bool)
        last[np.append(starts[1:] - 1, n - 1)] = True
        if np.any((self.terminated | self.truncated) & ~last):
            raise UserError(f"demos{where}: terminated/truncated flags are set inside an episode; episode_starts "
                            "do not match them")

    def check_fits(self, env_id: str | None, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Reject demos recorded on another env or with observations/actions the env's spaces cannot hold."""
        where = self._where()
        if env_id and self.env_id and self.env_id != env_id:
            raise UserError(f"demos{where} were recorded on {self.env_id}, not {env_id}; pass --env {self.env_id} "
                            f"or record demos for {env_id} with 'rlgen rollouts'")
        if not isinstance(observation_space, spaces.Box):
            raise UserError(f"demos need a Box observation space; {env_id} has {observation_space}")
        if self.obs.shape[1:] != observation_space.shape:
            raise UserError(f"demos{where} have observations of shape {self.obs.shape[1:]}, but {env_id or 'the env'}"
                            f" observes {observation_space.shape}; these demos are for another env")
        _check_within(self.obs, observation_space, f"demos{where}: observations", env_id)
        if isinstance(action_space, spaces.Discrete):
            if self.actions.ndim != 1 or not np.issubdtype(self.actions.dtype, np.integer):
                raise UserError(f"demos{where} have actions of shape {self.actions.shape[1:]} and dtype "
                                f"{self.actions.dtype}, but {env_id or 'the env'} takes one integer action "
                                f"({action_space}); these demos are for another env")
            low, high = int(self.actions.min()), int(self.actions.max())
            if low < action_space.start or high >= action_space.start + action_space.n:
                raise UserError(f"demos{where} have actions in [{low}, {high}], outside {env_id or 'the env'}'s "
                                f"{action_space}; these demos are for another env")
        elif isinstance(action_space, spaces.Box):
            if self.actions.shape[1:] != action_space.shape or not np.issubdtype(self.actions.dtype, np.floating):
                raise UserError(f"demos{where} have actions of shape {self.actions.shape[1:]} ({self.actions.dtype}),"
                                f" but {env_id or 'the env'} takes {action_space.shape} floats; these demos are for "
                                "another env")
            _check_within(self.actions, action_space, f"demos{where}: actions", env_id)
        else:
            raise UserError(f"demos support Box and Discrete action spaces, not {action_space}")


_PER_TRANSITION = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")


def _check_within(x: np.ndarray, space: spaces.Box, what: str, env_id: str | None, tol: float = 1e-3) -> None:
    low = np.broadcast_to(space.low, space.shape)
    high = np.broadcast_to(space.high, space.shape)
    bad = (x < low - tol) | (x > high + tol)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise UserError(f"{what} leave {env_id or 'the env'}'s bounds (e.g. {float(x[tuple(i)]):.4g} at index "
                        f"{tuple(int(j) for j in i)}, bounds [{float(low[tuple(i[1:])]):.4g}, "
                        f"{float(high[tuple(i[1:])]):.4g}]); these demos are for another env")


# --------------------------------------------------------------------------------------------------- writing
def demos_from_episodes(episodes: list[dict[str, np.ndarray]], env_id: str, action_space: spaces.Space,
                        source: str = "") -> Demonstrations:
    """Stack per-episode arrays (keys ``obs, next_obs, actions, rewards, terminated, truncated``) into one
    :class:`Demonstrations`."""
    if not episodes:
        raise ValueError("no episodes to stack")
    lengths = np.array([len(ep["rewards"]) for ep in episodes], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    cat = {k: np.concatenate([ep[k] for ep in episodes]) for k in _PER_TRANSITION}
    act_dtype = np.int64 if isinstance(action_space, spaces.Discrete) else np.float32
    demos = Demonstrations(
        obs=cat["obs"].astype(np.float32), next_obs=cat["next_obs"].astype(np.float32),
        actions=cat["actions"].astype(act_dtype), rewards=cat["rewards"].astype(np.float32),
        terminated=cat["terminated"].astype(bool), truncated=cat["truncated"].astype(bool),
        episode_starts=starts, env_id=env_id, source=source)
    demos.validate()
    return demos


def save_demos(path: str | os.PathLike, demos: Demonstrations) -> Path:
    """Write ``demos`` in format version 1, atomically (an interrupted write leaves no partial file)."""
    demos.validate()
    arrays: dict[str, Any] = {
        "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64), "env_id": np.asarray(demos.env_id),
        "obs": demos.obs, "next_obs": demos.next_obs, "actions": demos.actions, "rewards": demos.rewards,
        "terminated": demos.terminated, "truncated": demos.truncated, "episode_starts": demos.episode_starts,
        "source": np.asarray(demos.source),
    }

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: savez would otherwise append ".npz" to the temporary name
            np.savez_compressed(f, **arrays)

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------------------- reading
def load_demos(path: str | os.PathLike, env_id: str | None = None, observation_space: spaces.Space | None = None,
               action_space: spaces.Space | None = None) -> Demonstrations:
    """Read an rlgen demos file or an imitation-library npz; with spaces given, check the demos fit the env."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"demos path {path} is a directory; pass an .npz file (the imitation library's HuggingFace "
                        "dataset directories are not read: save them as npz, or record demos with 'rlgen rollouts')")
    if not path.is_file():
        raise UserError(f"demos file {path} does not exist; check the path or record demos with 'rlgen rollouts'")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"demos file {path} is not a readable npz archive ({type(exc).__name__}); "
                        "record it again with 'rlgen rollouts'") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"demos file {path} holds a single array, not an npz archive of demonstrations")
    with archive:
        keys = set(archive.files)
        try:
            if "format_version" in keys:
                demos = _read_rlgen(archive, keys, path)
            elif set(IMITATION_KEYS) <= keys:
                demos = _read_imitation(archive, keys, path)
            else:
                raise UserError(f"demos file {path} has arrays {sorted(keys)}; it is neither rlgen demos (format "
                                f"version {FORMAT_VERSION}: {', '.join(REQUIRED_KEYS)}) nor imitation-library "
                                f"trajectories ({', '.join(IMITATION_KEYS)})")
        except UserError:
            raise
        except (ValueError, TypeError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            # Object arrays (need pickle), truncated members, bad CRCs, a format_version that is not one number.
            raise UserError(f"demos file {path} is corrupt or holds arrays that need pickle "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                            "record it again with 'rlgen rollouts'") from exc
    demos.validate()
    if observation_space is not None and action_space is not None:
        demos.check_fits(env_id, observation_space, action_space)
    return demos


def _array(archive: Any, key: str, path: Path) -> np.ndarray:
    """One member as a plain numeric/bool/str array (a member that is no .npy file comes back as bytes)."""
    value = archive[key]
    if not isinstance(value, np.ndarray) or value.dtype == object:
        raise UserError(f"demos file {path} is corrupt: its member {key!r} is not a plain array; "
                        "record it again with 'rlgen rollouts'")
    return value


def _read_rlgen(archive: Any, keys: set[str], path: Path) -> Demonstrations:
    version = int(_array(archive, "format_version", path))
    if version != FORMAT_VERSION:
        raise UserError(f"demos file {path} is format version {version}; this rlgen reads version {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in keys]
    if missing:
        raise UserError(f"demos file {path} lacks array(s) {', '.join(missing)}; record it again with 'rlgen rollouts'")
    a = {key: _array(archive, key, path) for key in REQUIRED_KEYS}
    actions = a["actions"]
    return Demonstrations(
        obs=a["obs"].astype(np.float32), next_obs=a["next_obs"].astype(np.float32),
        actions=actions if np.issubdtype(actions.dtype, np.integer) else actions.astype(np.float32),
        rewards=a["rewards"].astype(np.float32), terminated=a["terminated"].astype(bool),
        truncated=a["truncated"].astype(bool), episode_starts=a["episode_starts"].astype(np.int64),
        env_id=str(a["env_id"]), source=str(path))


def _read_imitation(archive: Any, keys: set[str], path: Path) -> Demonstrations:
    """imitation's npz: ``obs`` has ``len + 1`` rows per trajectory; ``indices`` are the cumulative lengths."""
    obs_all = _array(archive, "obs", path).astype(np.float32)
    acts = _array(archive, "acts", path)
    indices = _array(archive, "indices", path).astype(np.int64).reshape(-1)
    terminal = _array(archive, "terminal", path).astype(bool).reshape(-1)
    n, n_traj = len(acts), len(indices) + 1
    if len(terminal) != n_traj or len(obs_all) != n + n_traj:
        raise UserError(f"imitation trajectories in {path} are inconsistent: {n} actions in {n_traj} trajectories "
                        f"need {n + n_traj} observations (found {len(obs_all)}) and {n_traj} terminal flags "
                        f"(found {len(terminal)})")
    starts = np.concatenate([[0], indices]).astype(np.int64)
    if np.any(np.diff(starts) <= 0) or (n_traj and starts[-1] >= n):
        raise UserError(f"imitation trajectories in {path} have invalid split indices")
    episode = np.repeat(np.arange(n_traj), np.diff(np.append(starts, n)))
    row = np.arange(n) + episode  # transition j of trajectory i sits at obs row j + i
    ends = np.append(starts[1:] - 1, n - 1)
    terminated = np.zeros(n, dtype=bool)
    truncated = np.zeros(n, dtype=bool)
    terminated[ends] = terminal
    truncated[ends] = ~terminal
    has_rewards = "rews" in keys
    rewards = _array(archive, "rews", path).astype(np.float32).reshape(-1) if has_rewards else np.zeros(n, dtype=np.float32)
    if np.issubdtype(acts.dtype, np.floating) and acts.ndim == 1:
        acts = acts.reshape(-1, 1)  # 1-D float actions: a one-dimensional Box
    return Demonstrations(obs=obs_all[row], next_obs=obs_all[row + 1],
                          actions=acts if np.issubdtype(acts.dtype, np.integer) else acts.astype(np.float32),
                          rewards=rewards, terminated=terminated, truncated=truncated, episode_starts=starts,
                          env_id="", source=str(path), has_rewards=has_rewards)


# ------------------------------------------------------------------------------------------------- recording
def record_demos(policy: Any, env_id: str, episodes: int = 25, min_steps: int = 0, deterministic: bool = True,
                 seed: int = 0, source: str = "", progress: bool = True) -> Demonstrations:
    """Run ``policy`` (an SB3 model, or anything with its ``predict``) on one ``env_id`` env until at least
    ``episodes`` whole episodes and ``min_steps`` transitions are recorded. The first reset is seeded with
    ``seed``; episodes follow one another on the same env, so recording is not biased towards short episodes."""
    from tqdm import tqdm

    from rlgen.common.sb3_training import make_env

    env = make_env(env_id)
    recorded: list[dict[str, np.ndarray]] = []
    total = 0
    bar = tqdm(total=episodes, unit="episode", desc="rollouts", disable=None if progress else True)
    try:
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        while len(recorded) < episodes or total < min_steps:
            keys = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")
            ep: dict[str, list[Any]] = {k: [] for k in keys}
            done = False
            while not done:
                action, _ = policy.predict(obs, deterministic=deterministic)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                done = bool(terminated or truncated)
                for key, value in zip(keys, (obs, next_obs, action, reward, terminated, truncated)):
                    ep[key].append(value)
                obs = next_obs
            recorded.append({k: np.asarray(v) for k, v in ep.items()})
            total += len(ep["rewards"])
            bar.update(1)
            obs, _ = env.reset()
    finally:
        bar.close()
        env.close()
    return demos_from_episodes(recorded, env_id, env.action_space, source=source)
