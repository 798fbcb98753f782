"""GAIL with an off-policy generator: SAC's replay samples carry the current learned reward (env actions, not SB3's
scaled ones), the reward trains on the buffer, and ``rlgen gail --preset sac`` checkpoints and resumes both."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import SAC

from rlgen.common.checkpoint import load_torch
from rlgen.common.replay_relabel import RelabeledReplayBuffer, ReplayRewardCallback
from rlgen.imitation.demos import record_demos, save_demos
from tests.cli_helpers import fails_cleanly, succeeds


class LinearReward:
    """A stand-in reward: ``10 a_0 + s_0``, and a record of what it was trained on."""

    absorbing = False

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.trained_on: list[np.ndarray] = []
        self.absorbing_masks: list[np.ndarray] = []

    def train_discriminator(self, policy_obs: np.ndarray, policy_actions: np.ndarray, metrics: bool = True,
                            policy_absorbing: np.ndarray | None = None) -> dict[str, float]:
        self.trained_on.append(np.array(policy_actions))
        if policy_absorbing is not None:
            self.absorbing_masks.append(policy_absorbing)
        return {"fake/rounds": float(len(self.trained_on))}

    def reward(self, obs, actions) -> np.ndarray:
        return (10 * torch.as_tensor(actions)[:, 0] + torch.as_tensor(obs)[:, 0]).numpy()


def test_replay_samples_carry_the_learned_reward_of_env_actions():
    model = SAC("MlpPolicy", "Pendulum-v1", seed=0, learning_starts=50, batch_size=32, buffer_size=1000,
                policy_kwargs={"net_arch": [16]}, replay_buffer_class=RelabeledReplayBuffer)
    source = LinearReward()
    model.learn(120, callback=ReplayRewardCallback(source, pairs_per_round=64))
    buffer = model.replay_buffer
    assert len(source.trained_on) == 120 - 64 + 1  # a round after every env step, once 64 transitions are in
    trained = np.concatenate(source.trained_on)
    assert np.abs(trained).max() > 1.0 and np.abs(trained).max() <= 2.0  # Pendulum's [-2, 2], not SB3's [-1, 1]
    assert (buffer.rewards[:120] <= 0).all()  # the buffer keeps the env's (negative) rewards
    samples = buffer.sample(256)
    env_actions = 2.0 * samples.actions  # Pendulum's bounds are symmetric: unscaling multiplies by 2
    expected = 10 * env_actions[:, 0] + samples.observations[:, 0]
    torch.testing.assert_close(samples.rewards[:, 0], expected)


@pytest.fixture(scope="module")
def pendulum_demos(tmp_path_factory):
    class Controller:  # a crude energy-pumping swing-up: any demos will do
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            obs = np.asarray(obs)
            return np.clip(2.0 * np.sign(obs[..., 2:3] * obs[..., 0:1]), -2, 2).astype(np.float32), None

    path = tmp_path_factory.mktemp("demos") / "pendulum.npz"
    save_demos(path, record_demos(Controller(), "Pendulum-v1", episodes=2, seed=0, progress=False))
    return path


def test_gail_with_sac_checkpoints_and_resumes(capsys, tmp_path, pendulum_demos):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("checkpoint_every: 1000000\neval_episodes: 1\nalgo_kwargs: {sac: {learning_starts: 100, "
                   "buffer_size: 1000, batch_size: 32}}\npolicy_kwargs: {net_arch: [16]}\n"
                   "discriminator: {hidden_sizes: [8]}\n")
    runs = tmp_path / "runs"
    args = ["gail", "--env", "Pendulum-v1", "--demos", str(pendulum_demos), "--preset", "sac", "--config", str(cfg)]
    out = succeeds(capsys, [*args, "--steps", "300", "--out", str(runs)])
    assert "normalised return" in out
    run = next(runs.glob("gail-Pendulum-v1-s0-*"))
    assert json.loads((run / "config.json").read_text())["algo"] == "sac"
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["replay"] == "replay_300.npz"
    rounds = load_torch(run / "checkpoints" / latest["extras"])["reward_source"]["rounds"]
    assert rounds == 300 - 256 + 1  # discriminator rounds of 256 replay pairs, one per env step once there are 256
    succeeds(capsys, ["gail", "--resume", str(run), "--steps", "900"])
    latest = json.loads((run / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 900
    assert load_torch(run / "checkpoints" / latest["extras"])["reward_source"]["rounds"] == rounds + 600
    with open(run / "progress.csv") as f:  # (SB3's off-policy loop writes it every 4 episodes of 200 steps)
        assert "gail/disc_accuracy" in next(csv.reader(f))


def test_gail_with_sac_refuses_on_policy_options(capsys, tmp_path, pendulum_demos):
    out = ["--out", str(tmp_path / "runs")]
    base = ["gail", "--env", "Pendulum-v1", "--demos", str(pendulum_demos), "--preset", "sac"]
    fails_cleanly(capsys, [*base, "--vime-eta", "0.1", *out], "--algo sac", "--vime-eta")
    fails_cleanly(capsys, [*base, "--discriminator.policy_entropy_weight", "0.1", *out], "policy_entropy_weight")
    cartpole = Path(__file__).resolve().parents[1] / "benchmarks/results/gail/experts/CartPole-v1/demos.npz"
    fails_cleanly(capsys, ["gail", "--env", "CartPole-v1", "--demos", str(cartpole), "--algo", "sac", *out],
                  "continuous (Box) actions", "CartPole-v1")
    assert not (tmp_path / "runs").exists()


def test_gail_with_td3_explores_with_the_configured_noise(capsys, tmp_path, pendulum_demos):
    from stable_baselines3 import TD3

    cfg = tmp_path / "small.yaml"
    cfg.write_text("eval_episodes: 1\nalgo_kwargs: {td3: {learning_starts: 100, buffer_size: 1000, batch_size: 32, "
                   "action_noise_std: 0.3}}\npolicy_kwargs: {net_arch: [16]}\ndiscriminator: {hidden_sizes: [8]}\n")
    runs = tmp_path / "runs"
    succeeds(capsys, ["gail", "--env", "Pendulum-v1", "--demos", str(pendulum_demos), "--preset", "sac", "--algo",
                      "td3", "--config", str(cfg), "--steps", "300", "--out", str(runs)])
    run = next(runs.glob("gail-Pendulum-v1-s0-*"))
    model = TD3.load(run / "model.zip", device="cpu")
    np.testing.assert_allclose(model.action_noise._sigma, [0.3])  # SB3's TD3 alone would not explore at all
    cfg.write_text(cfg.read_text().replace("0.3", "-1"))
    assert "action_noise_std must be >= 0" in fails_cleanly(capsys, ["gail", "--env", "Pendulum-v1", "--demos",
                                                                     str(pendulum_demos), "--algo", "td3",
                                                                     "--preset", "sac", "--config", str(cfg)])


class AbsorbingReward(LinearReward):
    """The stand-in reward with an absorbing state worth -1 a step."""

    absorbing = True

    def absorbing_reward(self) -> float:
        return -1.0


def test_terminal_transitions_carry_the_absorbing_states_value_and_d_sees_it_as_often_as_episodes_end():
    from stable_baselines3 import TD3

    # InvertedPendulum terminates when the pole falls: a random policy ends an episode every few steps
    model = TD3("MlpPolicy", "InvertedPendulum-v5", seed=0, learning_starts=300, batch_size=32, buffer_size=1000,
                policy_kwargs={"net_arch": [16]}, replay_buffer_class=RelabeledReplayBuffer)
    source = AbsorbingReward()
    model.learn(400, callback=ReplayRewardCallback(source, pairs_per_round=256))
    buffer = model.replay_buffer
    ended = buffer.terminations()
    assert ended == int(buffer.dones[:400].sum()) > 20  # (no time limit is reached in 400 steps)
    buffer.full = True
    assert buffer.terminations() == ended  # counted afresh, as a buffer that wrapped around is
    buffer.full = False
    samples = buffer.sample(512)
    expected = 10 * 3.0 * samples.actions[:, 0] + samples.observations[:, 0]  # bounds [-3, 3]
    # then the absorbing state forever, scored no better than the minibatch's worst pair
    worst = min(-1.0, float(expected.min()))
    expected = expected + samples.dones[:, 0] * worst * model.gamma / (1 - model.gamma)
    torch.testing.assert_close(samples.rewards[:, 0], expected.float())
    assert samples.dones.sum() > 0 and samples.dones.sum() < 512
    share = np.concatenate(source.absorbing_masks[-50:]).mean()  # one absorbing draw per terminated episode
    assert abs(share - ended / (400 + ended)) < 0.03
    # SAC: the absorbing state's steps also count the entropy term, alpha times the target entropy
    sac = SAC("MlpPolicy", "InvertedPendulum-v5", seed=0, learning_starts=300, batch_size=32, buffer_size=1000,
              policy_kwargs={"net_arch": [16]}, ent_coef="auto_0.5", replay_buffer_class=RelabeledReplayBuffer)
    sac.learn(400, callback=ReplayRewardCallback(AbsorbingReward(), pairs_per_round=256))
    alpha = float(sac.log_ent_coef.detach().exp())
    assert 0.3 < alpha < 0.6 and sac.target_entropy == -1.0
    samples = sac.replay_buffer.sample(512)
    expected = 10 * 3.0 * samples.actions[:, 0] + samples.observations[:, 0]
    worst = min(-1.0, float(expected.min())) - alpha
    expected = expected + samples.dones[:, 0] * worst * sac.gamma / (1 - sac.gamma)
    torch.testing.assert_close(samples.rewards[:, 0], expected.float())


@pytest.fixture(scope="module")
def inverted_pendulum_demos(tmp_path_factory):
    class Balancer:  # keeps the pole up for a while, then lets it fall: episodes that terminate
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            obs = np.asarray(obs)
            return np.clip(5 * obs[..., 1:2] + obs[..., 3:4], -3, 3).astype(np.float32), None

    path = tmp_path_factory.mktemp("demos") / "pendulum.npz"
    save_demos(path, record_demos(Balancer(), "InvertedPendulum-v5", episodes=3, seed=0, progress=False))
    return path


def test_gail_with_absorbing_states_checkpoints_and_resumes(capsys, tmp_path, inverted_pendulum_demos):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("eval_episodes: 1\nalgo_kwargs: {td3: {learning_starts: 100, buffer_size: 1000, batch_size: 32}}"
                   "\npolicy_kwargs: {net_arch: [16]}\ndiscriminator: {hidden_sizes: [8]}\n")
    runs = tmp_path / "runs"
    args = ["gail", "--env", "InvertedPendulum-v5", "--demos", str(inverted_pendulum_demos), "--preset", "sac",
            "--config", str(cfg), "--absorbing", "--reward", "logit"]
    assert "--absorbing needs --algo sac or td3" in fails_cleanly(capsys, [*args, "--algo", "ppo", "--out", str(runs)])
    assert not runs.exists()
    succeeds(capsys, [*args[:5], "--preset", "dac", "--config", str(cfg), "--steps", "400", "--out", str(runs)])
    run = next(runs.glob("gail-InvertedPendulum-v5-s0-*"))
    config = json.loads((run / "config.json").read_text())
    assert config["algo"] == "td3" and config["discriminator"]["reward"] == "logit"  # the dac preset: DAC's recipe
    assert config["discriminator"]["absorbing"] and "expert_absorbing_share" not in config["discriminator"]
    extras = load_torch(run / "checkpoints" / json.loads((run / "checkpoints" / "latest.json").read_text())["extras"])
    weights = extras["reward_source"]["discriminator"]["net.0.weight"]
    assert weights.shape[1] == 4 + 1 + 1  # observation, action, the absorbing indicator
    succeeds(capsys, ["gail", "--resume", str(run), "--steps", "600"])
    assert json.loads((run / "summary.json").read_text())["steps"] == 600


def test_expert_transitions_fill_their_share_of_each_minibatch_and_carry_the_learned_reward(pendulum_demos):
    from rlgen.imitation.demos import load_demos

    demos = load_demos(pendulum_demos)
    model = SAC("MlpPolicy", "Pendulum-v1", seed=0, learning_starts=50, batch_size=32, buffer_size=1000,
                policy_kwargs={"net_arch": [16]}, replay_buffer_class=RelabeledReplayBuffer)
    buffer = model.replay_buffer
    buffer.share_expert_transitions(demos.obs, model.policy.scale_action(demos.actions), demos.next_obs,
                                    demos.terminated, 0.25)
    model.learn(80, callback=ReplayRewardCallback(LinearReward(), pairs_per_round=64))
    samples = buffer.sample(64)
    assert samples.observations.shape == (64, 3) and samples.dones.shape == samples.rewards.shape == (64, 1)
    expert = samples.observations[48:].numpy()  # the last quarter: rows of the demos, each with its own next state
    rows = [int(np.flatnonzero((demos.obs == row).all(1))[0]) for row in expert]
    np.testing.assert_allclose(samples.next_observations[48:].numpy(), demos.next_obs[rows])
    np.testing.assert_allclose(2.0 * samples.actions[48:].numpy(), demos.actions[rows], atol=1e-6)
    assert not (samples.observations[:48, None, :].numpy() == demos.obs[None]).all(-1).any()  # the rest: the policy's
    expected = 10 * 2.0 * samples.actions[:, 0] + samples.observations[:, 0]  # the learned reward, expert rows too
    torch.testing.assert_close(samples.rewards[:, 0], expected)
    with pytest.raises(ValueError, match="share"):
        buffer.share_expert_transitions(demos.obs, demos.actions, demos.next_obs, demos.terminated, 1.0)


def test_gail_expert_replay_runs_off_policy_only(capsys, tmp_path, pendulum_demos):
    cfg = tmp_path / "small.yaml"
    cfg.write_text("eval_episodes: 1\nalgo_kwargs: {td3: {learning_starts: 100, buffer_size: 1000, batch_size: 32}}"
                   "\npolicy_kwargs: {net_arch: [16]}\ndiscriminator: {hidden_sizes: [8]}\n")
    runs = tmp_path / "runs"
    args = ["gail", "--env", "Pendulum-v1", "--demos", str(pendulum_demos), "--config", str(cfg), "--out", str(runs)]
    assert "needs an off-policy generator" in fails_cleanly(capsys, [*args, "--expert-replay", "0.5"])
    assert "[0, 1)" in fails_cleanly(capsys, [*args, "--preset", "sac", "--algo", "td3", "--expert-replay", "1"])
    assert not runs.exists()
    succeeds(capsys, [*args, "--preset", "sac", "--algo", "td3", "--expert-replay", "0.5", "--steps", "300"])
    run = next(runs.glob("gail-Pendulum-v1-s0-*"))
    assert json.loads((run / "config.json").read_text())["expert_replay"] == 0.5
    succeeds(capsys, ["gail", "--resume", str(run), "--steps", "400"])  # the demos' transitions are shared again
    assert json.loads((run / "summary.json").read_text())["steps"] == 400
