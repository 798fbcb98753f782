"""Tests for VIME's Bayesian dynamics model, its information gain and the replay pool."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlgen.agents.vime.bnn import BayesianDynamicsModel
from rlgen.agents.vime.replay_pool import ReplayPool

OBS_DIM, ACT_DIM = 3, 2


def linear_dynamics(
    rng: np.random.Generator, n: int, low: float = -1.0, high: float = 1.0, coef: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transitions of s' = s + coef * [a, a_0] + small noise, with s uniform on [low, high]^3."""
    s = rng.uniform(low, high, (n, OBS_DIM))
    a = rng.uniform(-1.0, 1.0, (n, ACT_DIM))
    a_full = np.concatenate([a, a[:, :1]], axis=1)
    return s, a, s + coef * a_full + 0.01 * rng.normal(size=s.shape)


def random_posterior_model(hidden: tuple[int, ...], seed: int = 0) -> BayesianDynamicsModel:
    """A float64 model whose posterior stds differ per weight (so H^-1 is not a multiple of the identity)."""
    torch.manual_seed(seed)
    model = BayesianDynamicsModel(OBS_DIM, ACT_DIM, hidden_sizes=hidden, likelihood_std=0.5).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_rho"):
                p.copy_(torch.log(torch.expm1(torch.empty_like(p).uniform_(0.05, 0.6))))
            elif name.endswith("bias_mu"):
                p.normal_(0.0, 0.3)
    return model


def random_transitions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, OBS_DIM)), rng.normal(size=(n, ACT_DIM)), rng.normal(size=(n, OBS_DIM))


# ----------------------------------------------------------------------------- replay pool


def test_replay_pool_ring_buffer_matches_sequential_writes() -> None:
    pool = ReplayPool(obs_dim=1, action_dim=1, capacity=5, min_size=3)
    reference = np.zeros(5)  # what a one-sample-at-a-time ring buffer would hold
    pos = 0
    value = 0
    for batch in (3, 4, 12, 1):  # the 12-sample batch is larger than the capacity
        values = np.arange(value, value + batch, dtype=np.float32)
        pool.add_batch(values[:, None], -values[:, None], values[:, None] + 0.5)
        for v in values:
            reference[pos] = v
            pos = (pos + 1) % 5
        value += batch
        np.testing.assert_array_equal(pool.observations[: len(pool), 0], reference[: len(pool)])
        np.testing.assert_array_equal(pool.actions[: len(pool), 0], -reference[: len(pool)])
        np.testing.assert_array_equal(pool.next_observations[: len(pool), 0], reference[: len(pool)] + 0.5)
        assert pool.pos == pos
    assert len(pool) == 5 and pool.ready
    # After 20 samples the pool holds exactly the last 5.
    assert sorted(pool.observations[:, 0].tolist()) == [15.0, 16.0, 17.0, 18.0, 19.0]

    obs, act, nxt = pool.sample(100, np.random.default_rng(0))
    assert obs.shape == (100, 1) and set(obs[:, 0].tolist()) <= {15.0, 16.0, 17.0, 18.0, 19.0}
    np.testing.assert_array_equal(act, -obs)
    np.testing.assert_array_equal(nxt, obs + 0.5)

    in_mean, in_std, tgt_mean, tgt_std = pool.mean_std()
    inputs = np.stack([pool.observations[:, 0], pool.actions[:, 0]], axis=1)
    np.testing.assert_allclose(in_mean, inputs.mean(0))
    np.testing.assert_allclose(in_std, inputs.std(0))
    np.testing.assert_allclose(tgt_mean, [17.5])
    np.testing.assert_allclose(tgt_std, pool.next_observations[:, 0].std())


def test_replay_pool_state_round_trips_through_torch_save(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pool = ReplayPool(OBS_DIM, ACT_DIM, capacity=50, min_size=10)
    pool.add_batch(*linear_dynamics(rng, 70))  # wrapped: pos != 0
    path = tmp_path / "pool.pt"
    torch.save(pool.state_dict(), path)
    restored = ReplayPool(OBS_DIM, ACT_DIM, capacity=50)
    restored.load_state_dict(torch.load(path, weights_only=True))

    assert (restored.pos, restored.size, restored.min_size) == (pool.pos, pool.size, pool.min_size) == (20, 50, 10)
    more = linear_dynamics(rng, 7)
    pool.add_batch(*more)
    restored.add_batch(*more)
    for a, b in zip(pool.sample(32, np.random.default_rng(3)), restored.sample(32, np.random.default_rng(3))):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(pool.mean_std(), restored.mean_std()):
        np.testing.assert_array_equal(a, b)

    with pytest.raises(ValueError):
        ReplayPool(OBS_DIM, ACT_DIM, capacity=60).load_state_dict(pool.state_dict())


# ----------------------------------------------------------------------------- information gain


def test_kl_hessian_diagonal_matches_closed_form() -> None:
    """H_mu = 1/sigma^2 and H_rho = 2 sigmoid(rho)^2 / sigma^2 for KL[q(phi') || q(phi)] at phi' = phi."""
    mu, rho = torch.tensor(0.3, dtype=torch.float64), torch.tensor(-0.7, dtype=torch.float64)

    def kl(new: torch.Tensor) -> torch.Tensor:
        std, new_std = F.softplus(rho), F.softplus(new[1])
        return torch.log(std / new_std) + (new_std**2 + (new[0] - mu) ** 2) / (2 * std**2) - 0.5

    hess = torch.autograd.functional.hessian(kl, torch.stack([mu, rho]))
    sigma2 = F.softplus(rho) ** 2
    expected = torch.diag(torch.stack([1 / sigma2, 2 * torch.sigmoid(rho) ** 2 / sigma2]))
    torch.testing.assert_close(hess, expected)


@pytest.mark.parametrize(("hidden", "n_samples"), [((32,), 10), ((16, 16), 1), ((16, 16), 3), ((8, 8, 8), 4)])
def test_closed_form_matches_torch_func_reference(hidden: tuple[int, ...], n_samples: int) -> None:
    model = random_posterior_model(hidden)
    obs, act, nxt = random_transitions(13)
    noise = model.sample_noise(13, n_samples, torch.Generator().manual_seed(1))
    fast = model.information_gain(obs, act, nxt, noise=noise, block_size=5)  # several blocks, last one partial
    reference = model.information_gain_reference(obs, act, nxt, noise=noise)
    assert fast.shape == (13,) and bool((fast > 0).all())
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=0.0)


@pytest.mark.parametrize(("hidden", "n_samples"), [((32,), 10), ((16, 16), 1), ((8, 8, 8), 4)])
def test_chunk_information_gain_squares_the_chunks_summed_gradient(hidden: tuple[int, ...], n_samples: int) -> None:
    """The original's per-chunk KL: the per-transition gradients are summed over the chunk *before* the quadratic
    form (chunks of unequal sizes, rows of a chunk not adjacent); chunks of one transition give the paper's."""
    model = random_posterior_model(hidden)
    obs, act, nxt = random_transitions(13)
    noise = model.sample_noise(13, n_samples, torch.Generator().manual_seed(1))
    chunk_ids = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 0, 1, 3, 3])
    chunked = model.chunk_information_gain(obs, act, nxt, chunk_ids, noise=noise)
    inputs, targets, noise = model._prepare(obs, act, nxt, None, None, noise)
    grads = model.per_transition_grads(inputs, targets, noise)
    h_inv = model._inverse_kl_hessian()
    expected = torch.stack([0.5 * 0.01**2 * sum((g[torch.as_tensor(chunk_ids == c)].sum(0).square() * h_inv[name])
                                                 .sum() for name, g in grads.items()) for c in range(4)])
    torch.testing.assert_close(chunked, expected, rtol=1e-9, atol=0.0)
    assert not torch.allclose(chunked, torch.stack([model.information_gain(obs, act, nxt, noise=noise)
                                                    [torch.as_tensor(chunk_ids == c)].sum() for c in range(4)]))
    singletons = model.chunk_information_gain(obs, act, nxt, np.arange(13), noise=noise)
    torch.testing.assert_close(singletons, model.information_gain(obs, act, nxt, noise=noise), rtol=1e-9, atol=0.0)


def test_closed_form_matches_reference_in_float32() -> None:
    torch.manual_seed(0)
    model = BayesianDynamicsModel(OBS_DIM, ACT_DIM, hidden_sizes=(32, 32))
    obs, act, nxt = random_transitions(200)
    noise = model.sample_noise(200, 5, torch.Generator().manual_seed(1))
    fast = model.information_gain(obs, act, nxt, noise=noise)
    torch.testing.assert_close(fast, model.information_gain_reference(obs, act, nxt, noise=noise), rtol=1e-4, atol=0.0)


def test_second_order_approximation_matches_exact_kl() -> None:
    """0.5 lambda^2 g^T H^-1 g ~= KL[q(phi - lambda H^-1 g) || q(phi)], with an O(lambda) relative error."""
    model = random_posterior_model((16, 16))
    obs, act, nxt = random_transitions(20)
    noise = model.sample_noise(20, 4, torch.Generator().manual_seed(1))
    rel_errors = []
    for step in (1e-2, 1e-3):
        approx = model.information_gain(obs, act, nxt, step_size=step, noise=noise)
        exact = model.exact_kl_after_step(obs, act, nxt, step_size=step, noise=noise)
        rel_errors.append(((approx - exact).abs() / exact).max().item())
    assert rel_errors[0] < 2e-2
    assert rel_errors[1] < 2e-3
    assert rel_errors[1] < rel_errors[0] / 5  # the error is higher order, not a constant factor


def test_same_seed_same_information_gain() -> None:
    obs, act, nxt = random_transitions(300)

    def run(model_seed: int, noise_seed: int) -> torch.Tensor:
        torch.manual_seed(model_seed)
        model = BayesianDynamicsModel(OBS_DIM, ACT_DIM)
        return model.information_gain(obs, act, nxt, generator=torch.Generator().manual_seed(noise_seed))

    first = run(0, 1)
    torch.testing.assert_close(first, run(0, 1), rtol=0.0, atol=0.0)
    assert not torch.equal(first, run(0, 2))  # the MC noise does matter
    assert not torch.equal(first, run(1, 1))


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained() -> tuple[BayesianDynamicsModel, ReplayPool, float, float]:
    """A model fitted to s' = s + 0.1 a on s in [-1, 1]^3, with its ELBO on a fixed batch before and after."""
    rng = np.random.default_rng(0)
    pool = ReplayPool(OBS_DIM, ACT_DIM, capacity=5000, min_size=500)
    pool.add_batch(*linear_dynamics(rng, 3000))
    torch.manual_seed(0)
    model = BayesianDynamicsModel(OBS_DIM, ACT_DIM, likelihood_std=0.5, learning_rate=3e-3)
    model.update_normalization(pool)
    inputs, targets = model.normalize(*pool.sample(1000, np.random.default_rng(1)))

    def eval_loss() -> float:
        with torch.no_grad():
            return model.elbo_loss(inputs, targets, generator=torch.Generator().manual_seed(0)).item()

    before = eval_loss()
    stats = model.fit(pool, n_updates=1000, batch_size=32, rng=np.random.default_rng(2))
    assert stats["n_updates"] == 1000 and math.isfinite(stats["elbo_loss"])
    return model, pool, before, eval_loss()


def test_training_lowers_elbo_loss(trained) -> None:
    model, pool, before, after = trained
    assert after < 0.5 * before
    in_mean, _, _, tgt_std = pool.mean_std()
    np.testing.assert_allclose(model.input_mean.numpy(), in_mean, rtol=1e-6)
    np.testing.assert_allclose(model.target_std.numpy(), tgt_std, rtol=1e-6)


def test_information_gain_is_higher_off_the_replay_pool(trained) -> None:
    model = trained[0]
    rng = np.random.default_rng(5)

    def mean_ig(transitions: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        return model.information_gain(*transitions, generator=torch.Generator().manual_seed(3)).mean().item()

    seen = mean_ig(linear_dynamics(rng, 500))
    far_away = mean_ig(linear_dynamics(rng, 500, low=3.0, high=4.0))  # same dynamics, unvisited states
    inconsistent = mean_ig(linear_dynamics(rng, 500, coef=-0.5))  # visited states, other dynamics
    assert far_away > 10 * seen
    assert inconsistent > 2 * seen


def test_fit_waits_for_min_pool_size() -> None:
    pool = ReplayPool(OBS_DIM, ACT_DIM, capacity=1000, min_size=500)
    pool.add_batch(*linear_dynamics(np.random.default_rng(0), 499))
    model = BayesianDynamicsModel(OBS_DIM, ACT_DIM)
    before = [p.clone() for p in model.parameters()]
    assert model.fit(pool)["n_updates"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
