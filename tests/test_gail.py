"""GAIL's discriminator and reward, the reward source on SB3, behaviour cloning and the observation normaliser."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from rlgen.agents.bc import BehaviorCloning
from rlgen.agents.gail import GAIL, Discriminator, discriminator_loss, obs_norm_policy_kwargs, reward_from_logits
from rlgen.common.normalization import ObsNormExtractor, RunningNorm
from rlgen.common.reward_relabel import RewardRelabelCallback, TransitionBatch
from rlgen.common.sb3_training import policy_kwargs_from_config
from rlgen.imitation.demos import record_demos


class CartPoleController:
    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(obs)
        return (obs[..., 2] + 0.5 * obs[..., 3] > 0).astype(np.int64), None


class RandomActions:
    def __init__(self, space, seed):
        self.space = space
        self.space.seed(seed)

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        return self.space.sample(), None


@pytest.fixture(scope="module")
def cartpole_data():
    """Expert (controller) and random-policy transitions on CartPole, each split into train and test halves."""
    space = gym.make("CartPole-v1").action_space
    expert = record_demos(CartPoleController(), "CartPole-v1", episodes=4, seed=0, progress=False)
    rand = record_demos(RandomActions(space, 0), "CartPole-v1", episodes=120, seed=1, progress=False)
    rng = np.random.default_rng(0)

    def split(d):
        idx = rng.permutation(d.n_transitions)
        half = len(idx) // 2
        return (d.obs[idx[:half]], d.actions[idx[:half]]), (d.obs[idx[half:]], d.actions[idx[half:]])

    return split(expert), split(rand)


def cartpole_gail(expert_obs, expert_actions, **kwargs) -> GAIL:
    env = gym.make("CartPole-v1")
    return GAIL(expert_obs, expert_actions, env.observation_space, env.action_space, **kwargs)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative."""
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def test_discriminator_separates_expert_from_random(cartpole_data):
    (e_train, e_test), (r_train, r_test) = cartpole_data
    gail = cartpole_gail(*e_train, seed=0)
    before = gail.expert_probability(*e_test)
    np.testing.assert_allclose(before, 0.5)  # zero-initialised output layer: D = 1/2 everywhere
    metrics = gail.train_discriminator(*r_train, expert_obs=e_train[0][:len(r_train[0])],
                                       expert_actions=e_train[1][:len(r_train[0])], steps=300)
    assert metrics["gail/disc_accuracy"] > 0.9
    d_expert, d_random = gail.expert_probability(*e_test), gail.expert_probability(*r_test)
    accuracy = 0.5 * ((d_expert > 0.5).mean() + (d_random <= 0.5).mean())
    assert accuracy > 0.85, accuracy  # held-out data


@pytest.mark.parametrize("reward", ["neg_log_1_minus_d", "log_d", "logit"])
def test_reward_ranks_expert_transitions_above_random(cartpole_data, reward):
    (e_train, e_test), (r_train, r_test) = cartpole_data
    gail = cartpole_gail(*e_train, reward=reward, seed=1)
    for _ in range(100):  # the GAIL loop's fit: rollout against an equal-size expert draw
        gail.train_discriminator(*r_train)
    r_expert, r_random = gail.reward(*e_test), gail.reward(*r_test)
    assert auc(r_expert, r_random) > 0.9
    assert r_expert.mean() > r_random.mean()
    if reward == "neg_log_1_minus_d":
        assert np.all(r_random >= 0) and np.all(r_expert >= 0)
    elif reward == "log_d":
        assert np.all(r_random <= 0) and np.all(r_expert <= 0)
    else:  # log D - log(1 - D): the logit itself
        np.testing.assert_allclose(gail.reward(*r_test), gail.logits(*r_test), rtol=1e-6)


def test_absorbing_state_is_an_input_of_its_own_drawn_as_often_as_episodes_terminate(cartpole_data):
    (e_train, _), (r_train, r_test) = cartpole_data
    gail = cartpole_gail(*e_train, absorbing=True, expert_absorbing_share=0.01, reward="logit", seed=0,
                         learning_rate=0.01)
    d = gail.discriminator
    obs, acts = torch.as_tensor(r_test[0][:5]), torch.as_tensor(r_test[1][:5])
    mask = torch.tensor([True, False, True, False, False])
    x = d.inputs(obs, acts, mask)
    assert x.shape == (5, 4 + 2 + 1)  # observation, one-hot action, the absorbing indicator
    torch.testing.assert_close(x[mask], torch.tensor([[0.0] * 6 + [1.0]] * 2))  # nothing of s, a in that state
    torch.testing.assert_close(x[~mask], torch.cat([d.inputs(obs, acts)[~mask, :6], torch.zeros(3, 1)], 1))
    normaliser = d.norm.mean.clone()
    # policy draws where a third are the absorbing state (short episodes) against an expert that rarely ends
    policy_absorbing = np.random.default_rng(0).random(len(r_train[0])) < 1 / 3
    for _ in range(150):
        gail.train_discriminator(*r_train, policy_absorbing=policy_absorbing)
    assert gail.absorbing_reward() < -2  # D learned that the absorbing state is the policy's
    z = d(obs, acts, torch.ones(5, dtype=torch.bool))
    torch.testing.assert_close(z, d.absorbing_logit().expand(5))
    assert "gail/absorbing_reward" in gail.train_discriminator(*r_train, policy_absorbing=policy_absorbing)
    # the absorbing rows leave the input normaliser alone: zero observations would drag its mean
    assert not torch.allclose(normaliser, d.norm.mean) and d.norm.mean[0].abs() < 0.2
    with pytest.raises(ValueError, match="absorbing"):
        cartpole_gail(*e_train, expert_absorbing_share=0.1)


def test_the_gradient_penalty_leaves_the_absorbing_state_out(cartpole_data):
    """Penalised along lines from it to expert pairs, D scored the absorbing state above the policy's average pair
    (here -0.8 against -1.1 after 500 rounds; on Humanoid falling then paid); left out, far below it."""
    (e_train, _), (r_train, _) = cartpole_data
    gail = cartpole_gail(*e_train, absorbing=True, expert_absorbing_share=0.001, reward="logit", seed=0,
                         learning_rate=1e-2, gradient_penalty=10.0)
    policy_absorbing = np.random.default_rng(0).random(len(r_train[0])) < 0.05
    for _ in range(500):
        gail.train_discriminator(*r_train, policy_absorbing=policy_absorbing)
    assert gail.absorbing_reward() < gail.reward(*r_train).mean() - 1.5


def test_rewards_are_stable_for_extreme_logits():
    z = torch.tensor([-200.0, -20.0, 0.0, 20.0, 200.0])
    r = reward_from_logits(z, "neg_log_1_minus_d")
    assert torch.isfinite(r).all() and torch.all(r >= 0)
    d = torch.sigmoid(z[1:4].double())
    torch.testing.assert_close(r[1:4].double(), -torch.log(1 - d), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reward_from_logits(z[1:4], "log_d").double(), torch.log(d), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(reward_from_logits(z, "log_d")).all()
    with pytest.raises(ValueError):
        reward_from_logits(z, "nope")


def test_discriminator_loss_is_balanced_logistic_loss_minus_entropy():
    p, e = torch.tensor([-1.0, 0.5]), torch.tensor([2.0, 0.0, 1.0, -0.5])
    expected = -torch.log(1 - torch.sigmoid(p)).mean() - torch.log(torch.sigmoid(e)).mean()
    torch.testing.assert_close(discriminator_loss(p, e), expected)
    # The entropy bonus lowers the loss most where D is unsure (logit 0: entropy log 2).
    zero = torch.zeros(1)
    torch.testing.assert_close(discriminator_loss(zero, zero) - discriminator_loss(zero, zero, 0.1),
                               torch.tensor(0.2 * np.log(2), dtype=torch.float32))


def test_gradient_penalty_is_the_distance_of_the_logits_gradient_norm_from_one(cartpole_data):
    """With a linear D (one layer, weight w), grad z = w everywhere: the penalty is (|w| - 1)^2 at any point, and
    its gradient reaches w; the penalty's weight 0 leaves a run as it was (no extra draws)."""
    (e_train, _), (r_train, _) = cartpole_data
    gail = cartpole_gail(*e_train, hidden_sizes=(), gradient_penalty=10.0, seed=0)
    w = gail.discriminator.net[0].weight
    with torch.no_grad():
        w.copy_(torch.tensor([[3.0, 0.0, -4.0, 0.0, 0.0, 0.0]]))  # 4 observation inputs + one-hot of 2 actions
    obs, act = (torch.as_tensor(np.asarray(a)) for a in r_train)
    e_obs, e_act = (torch.as_tensor(np.asarray(a)) for a in e_train)
    penalty = gail._gradient_penalty(gail._obs_tensor(obs), gail._actions_tensor(act), gail._obs_tensor(e_obs),
                                     gail._actions_tensor(e_act))
    torch.testing.assert_close(penalty, torch.tensor(16.0))  # (|(3, -4)| - 1)^2
    penalty.backward()  # through the gradient to the weights: 2 (|w| - 1) w / |w|
    torch.testing.assert_close(w.grad, torch.tensor([[4.8, 0.0, -6.4, 0.0, 0.0, 0.0]]), rtol=1e-4, atol=1e-4)
    w.grad = None
    gail.train_discriminator(*r_train, steps=2)  # and it trains with it
    results = []
    for kwargs in ({}, {"gradient_penalty": 0.0}):
        torch.manual_seed(0)  # the same initial weights
        results.append(cartpole_gail(*e_train, seed=0, **kwargs).train_discriminator(*r_train))
    assert results[0] == results[1]


def test_box_actions_and_input_normalisation():
    obs_space, act_space = spaces.Box(-np.inf, np.inf, (3,)), spaces.Box(-2.0, 2.0, (2,))
    rng = np.random.default_rng(0)
    expert_obs = rng.normal(100.0, 10.0, size=(500, 3)).astype(np.float32)  # far from zero: needs normalising
    expert_act = np.tanh(expert_obs[:, :2] - 100.0).astype(np.float32)       # a function of the state
    policy_obs = rng.normal(100.0, 10.0, size=(500, 3)).astype(np.float32)
    policy_act = rng.uniform(-2, 2, size=(500, 2)).astype(np.float32)
    gail = GAIL(expert_obs, expert_act, obs_space, act_space, seed=0)
    disc = gail.discriminator
    assert isinstance(disc.norm, RunningNorm) and disc.norm.mean.shape == (5,)
    np.testing.assert_allclose(disc.norm.mean[:3].numpy(), expert_obs.mean(0), rtol=1e-4)  # started on the expert
    for _ in range(200):
        gail.train_discriminator(policy_obs, policy_act)
    assert auc(gail.reward(expert_obs, expert_act), gail.reward(policy_obs, policy_act)) > 0.9
    # The running statistics saw the policy data as well.
    assert disc.norm.count.item() == 500 + 200 * 1000


def test_running_norm_matches_numpy():
    norm = RunningNorm(2)
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3, 2, size=(n, 2)) for n in (5, 50, 1)]
    for chunk in chunks:
        norm.update(torch.as_tensor(chunk, dtype=torch.float32))
    all_x = np.concatenate(chunks)
    np.testing.assert_allclose(norm.mean.numpy(), all_x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), all_x.var(0), rtol=1e-4)


def test_discrete_actions_are_one_hot():
    disc = Discriminator(spaces.Box(-1, 1, (2,)), spaces.Discrete(3), hidden_sizes=(4,), normalize_input=False)
    assert disc.net[0].in_features == 2 + 3
    obs = torch.zeros(3, 2)
    torch.nn.init.normal_(disc.net[-1].weight)
    logits = disc(obs, torch.tensor([0.0, 1.0, 2.0]))  # float actions from the rollout buffer work too
    assert logits.shape == (3,) and len(set(logits.tolist())) == 3


class CountingGAIL(GAIL):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[TransitionBatch] = []

    def relabel(self, batch):
        self.seen.append(batch)
        return super().relabel(batch)


def test_relabels_ppo_rollouts_and_checkpoints_with_plain_tensors(cartpole_data):
    (e_train, _), _ = cartpole_data
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=128, n_epochs=1, seed=0)
    gail = CountingGAIL(*e_train, env.observation_space, env.action_space, seed=0,
                        policy_entropy_weight=0.01)

    class Snapshot(RewardRelabelCallback):  # subclass only to read the buffer right after relabelling
        def _on_rollout_end(self):
            super()._on_rollout_end()
            self.buffer_rewards = self.model.rollout_buffer.rewards.copy()
            self.log_probs = self.model.rollout_buffer.log_probs.copy()

    cb = Snapshot(gail)
    model.learn(128, callback=cb)
    assert len(gail.seen) == 1 and gail.rounds == 1
    batch = gail.seen[0]
    expected = gail.reward(batch.flat().obs, batch.flat().actions).reshape(batch.shape) - 0.01 * cb.log_probs
    not_truncated = ~batch.truncated
    np.testing.assert_allclose(cb.buffer_rewards[not_truncated], expected[not_truncated], rtol=1e-5, atol=1e-6)

    # Checkpoints: plain tensors/numbers only (weights_only load), and a restored source continues identically.
    buffer = io.BytesIO()
    torch.save(gail.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = GAIL(*e_train, env.observation_space, env.action_space, seed=123,
                 policy_entropy_weight=0.01)
    fresh.load_state_dict(state)
    obs, acts = batch.flat().obs, batch.flat().actions
    np.testing.assert_allclose(fresh.reward(obs, acts), gail.reward(obs, acts), rtol=1e-6)
    m1, m2 = gail.train_discriminator(obs, acts), fresh.train_discriminator(obs, acts)
    assert m1 == pytest.approx(m2)  # same expert draws (rng restored) and same optimiser state


def test_gail_rejects_bad_arguments(cartpole_data):
    (e_train, _), _ = cartpole_data
    with pytest.raises(ValueError, match="reward"):
        cartpole_gail(*e_train, reward="log(D)")
    gail = cartpole_gail(*e_train, policy_entropy_weight=0.1)  # the bonus needs the policy's log probabilities
    obs, acts = e_train[0][:4].reshape(2, 2, -1), e_train[1][:4].reshape(2, 2)
    without = TransitionBatch(obs, acts, obs, np.zeros((2, 2)), np.zeros((2, 2), bool), np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="log probabilities"):
        gail.relabel(without)
    with pytest.raises(ValueError, match="shape"):
        GAIL(np.zeros((4, 3)), np.zeros(4), spaces.Box(-1, 1, (4,)), spaces.Discrete(2))


def test_obs_features_keep_the_discriminator_to_the_first_features(cartpole_data):
    (e_train, _), (r_train, _) = cartpole_data
    gail = cartpole_gail(*e_train, obs_features=2, seed=0)
    assert gail.discriminator.net[0].in_features == 2 + 2  # two observation features and the one-hot action
    gail.train_discriminator(*r_train, steps=20)
    obs, acts = e_train[0][:50].copy(), e_train[1][:50]
    before = gail.logits(obs, acts)
    obs[:, 2:] = np.random.default_rng(0).normal(size=(50, 2))  # the pole's angle and velocity: unseen
    np.testing.assert_array_equal(gail.logits(obs, acts), before)
    obs[:, 1] += 1.0
    assert not np.allclose(gail.logits(obs, acts), before)
    with pytest.raises(ValueError, match="obs_features"):
        cartpole_gail(*e_train, obs_features=5)


def test_obs_norm_extractor_is_saved_inside_the_model(tmp_path, cartpole_data):
    (e_train, _), _ = cartpole_data
    kwargs = {"net_arch": [16], "activation_fn": "tanh", **obs_norm_policy_kwargs(e_train[0])}
    resolved = policy_kwargs_from_config(kwargs)  # the import path in the config becomes the class
    assert resolved["features_extractor_class"] is ObsNormExtractor
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), policy_kwargs=resolved, seed=0)
    extractor = model.policy.features_extractor
    np.testing.assert_allclose(extractor.mean.numpy(), e_train[0].mean(0), rtol=1e-4, atol=1e-6)
    x = torch.as_tensor(e_train[0][:5])
    expected = ((x - extractor.mean) / extractor.std).clamp(-10, 10)
    torch.testing.assert_close(extractor(x), expected)
    model.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip")
    torch.testing.assert_close(loaded.policy.features_extractor.mean, extractor.mean)
    torch.testing.assert_close(loaded.policy.features_extractor.std, extractor.std)


def test_behaviour_cloning_reproduces_the_expert(cartpole_data):
    (e_train, e_test), _ = cartpole_data
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1), seed=0,
                policy_kwargs=policy_kwargs_from_config({"net_arch": [32], **obs_norm_policy_kwargs(e_train[0])}))
    bc = BehaviorCloning(model, *e_train, batch_size=64, learning_rate=1e-2, val_fraction=0.2, seed=0)
    first = bc.train_epoch()
    for _ in range(60):
        last = bc.train_epoch()
    assert last["bc/neg_log_likelihood"] < 0.5 * first["bc/neg_log_likelihood"]
    assert last["bc/val_score"] == pytest.approx(-last["bc/val_neg_log_likelihood"])  # the original's choice
    assert bc.action_accuracy(*e_test) > 0.9
    state = bc.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    bc.load_state_dict(torch.load(buffer, weights_only=True))
    assert bc.epoch == 61


def test_behaviour_cloning_keeps_the_best_validation_epoch():
    """With a validation share, the policy kept is the best-scoring epoch's, as the original picks its snapshot;
    the snapshot survives a checkpoint round trip. Few noisy pairs and a large step make later epochs worse."""
    env = make_vec_env("Pendulum-v1", n_envs=1)
    rng = np.random.default_rng(1)
    obs = rng.uniform(-1, 1, size=(60, 3)).astype(np.float32)
    actions = np.clip(2 * obs[:, :1] - obs[:, 2:3] + rng.normal(0, 0.5, (60, 1)), -2, 2).astype(np.float32)
    model = PPO("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [64, 64]})
    bc = BehaviorCloning(model, obs, actions, batch_size=16, learning_rate=3e-2, val_fraction=0.3, seed=0)
    scores = [bc.train_epoch()["bc/val_score"] for _ in range(30)]
    best = int(np.argmax(scores))
    assert best + 1 < len(scores) and scores[-1] < scores[best]  # the last epoch is not the best one
    buffer = io.BytesIO()
    torch.save(bc.state_dict(), buffer)
    buffer.seek(0)
    bc.load_state_dict(torch.load(buffer, weights_only=True))
    assert bc.restore_best() == best + 1
    assert bc.validation_score() == pytest.approx(scores[best])
    # train(epochs) is the same loop followed by restore_best
    again = BehaviorCloning(PPO("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [64, 64]}), obs, actions,
                            batch_size=16, learning_rate=3e-2, val_fraction=0.3, seed=0)
    assert again.train(30)["bc/kept_epoch"] == best + 1
    assert again.epoch == 30 and again.validation_score() == pytest.approx(scores[best])


def test_behaviour_cloning_on_box_actions():
    env = make_vec_env("Pendulum-v1", n_envs=1)
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, size=(2000, 3)).astype(np.float32)
    actions = np.clip(2 * obs[:, :1] - obs[:, 2:3], -2, 2).astype(np.float32)
    model = PPO("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [32]})
    bc = BehaviorCloning(model, obs, actions, batch_size=128, learning_rate=3e-3, seed=0)
    for _ in range(40):
        bc.train_epoch()
    assert bc.action_accuracy(obs, actions) > -0.05  # mean squared error of the deterministic actions
