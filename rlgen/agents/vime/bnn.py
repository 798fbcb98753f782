"""Bayesian neural network dynamics model and variational information gain of VIME.

Houthooft et al., "VIME: Variational Information Maximizing Exploration", NeurIPS 2016 (arXiv:1605.09674);
the authors' Theano code is ``openai/vime`` (``dynamics/bnn.py``, ``algos/batch_polopt_expl.py``,
``sampler/parallel_sampler_expl.py``, ``experiments/run_trpo_expl.py``).

The model is an MLP of Bayesian linear layers with fully factorised Gaussian weights and biases,
``q(w) = N(mu, softplus(rho)^2)``, prior ``N(0, prior_std^2)``, evaluated with the local reparameterisation
trick. It maps a normalised ``[s, a]`` to the normalised next state ``s'`` -- the original predicts ``s'`` itself,
not the difference ``s' - s`` -- under a Gaussian likelihood with fixed std.

Defaults and where they come from in the original code:

=====================  ==========  ======================================================================
argument               default     source
=====================  ==========  ======================================================================
``hidden_sizes``       ``(32,)``   ``BatchPolopt(unn_n_hidden=[32], unn_layers_type=[1, 1])``, ReLU hidden,
                                   linear output (``BNN(trans_func=rectify, out_func=linear)``)
``prior_std``          0.5         ``BatchPolopt(prior_sd=0.5)``; posterior std is initialised to it too
``likelihood_std``     5.0         ``BNN(likelihood_sd=5.0)`` (never overridden)
``n_samples``          10          ``BatchPolopt(snn_n_samples=10)``, also used for the information gain
``learning_rate``      1e-4        ``BNN(learning_rate=0.0001)`` and ``run_trpo_expl.py``
                                   (``BatchPolopt``'s own default is 1e-3), Adam
``kl_weight``          0.2         ``loss = kl / n_batches - log_p / n_samples`` with ``n_batches = 5``
``n_updates``          500         ``BatchPolopt(n_updates_per_sample=500)`` (the experiment uses 5000)
``batch_size``         10          ``BatchPolopt(pool_batch_size=10)``
``step_size``          0.01        ``parallel_sampler_expl``: ``for step_size in [0.01]`` (second-order update)
=====================  ==========  ======================================================================

Known differences from the original:

* Local reparameterisation draws one noise value per unit *and per transition*, as in Kingma et al. (2015); the
  original drew one per unit shared by the whole minibatch (``size=(num_units,)``).
* Weight means are initialised ``N(0, 1/fan_in)`` and bias means at 0; the original used ``N(0, 1)`` for both
  (pass ``mu_init_std=1.0`` to get that back).
* The information gain is computed per transition with the paper's ``0.5 * lambda^2 * g^T H^-1 g``; the original
  ``fast_kl_div`` drops the factor 0.5 (irrelevant once rewards are divided by the median KL) and computes one
  value per chunk of 64 consecutive transitions, shared by the whole chunk: :meth:`chunk_information_gain`
  (``VIME(kl_chunk=64)``). That is not only a change of scale: it rewards what a chunk's transitions teach the
  model together, more for steps whose gradients agree.
* Clipping the information gain to ``[0, 1000]`` and the median normalisation are left to the agent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

if TYPE_CHECKING:
    from rlgen.agents.vime.replay_pool import ReplayPool

ArrayLike = np.ndarray | torch.Tensor

# Entries of per-transition gradients materialised at once by information_gain (see there).
_GRAD_CHUNK_ENTRIES = 2**18


def _h_inv_quadratic(g_mu: torch.Tensor, g_var: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``g^T H^-1 g`` over one parameter tensor, from the loss's gradients w.r.t. its means (``g_mu``) and
    variances (``g_var = d l / d sigma^2``), each shaped ``(..., *var.shape)``: ``sum g_mu^2 sigma^2 + 2 g_var^2
    sigma^4`` (``H_mu = 1 / sigma^2``; for ``rho``, ``g_rho^2 / H_rho = 2 sigma^4 g_var^2``). Leading dims are kept."""
    dims = tuple(range(-var.dim(), 0))
    return (g_mu.square() * var + 2.0 * g_var.square() * var.square()).sum(dims)


def _softplus_inverse(x: float) -> float:
    return math.log(math.expm1(x))


class BayesianLinear(nn.Module):
    """Linear layer with factorised Gaussian weights and biases, evaluated with local reparameterisation.

    Weights are stored as ``(in_features, out_features)`` so that the layer computes ``x @ W + b``.

    :param in_features: Input size.
    :param out_features: Output size.
    :param prior_std: Std of the zero-mean Gaussian prior; also the initial posterior std.
    :param mu_init_std: Std of the initial weight/bias means; ``None`` for ``N(0, 1/in_features)`` weights
        and zero biases.
    """

    def __init__(
        self, in_features: int, out_features: int, prior_std: float = 0.5, mu_init_std: float | None = None
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.prior_std = prior_std
        w_std = 1.0 / math.sqrt(in_features) if mu_init_std is None else mu_init_std
        b_std = 0.0 if mu_init_std is None else mu_init_std
        rho0 = _softplus_inverse(prior_std)
        self.weight_mu = nn.Parameter(torch.randn(in_features, out_features) * w_std)
        self.weight_rho = nn.Parameter(torch.full((in_features, out_features), rho0))
        self.bias_mu = nn.Parameter(torch.randn(out_features) * b_std)
        self.bias_rho = nn.Parameter(torch.full((out_features,), rho0))

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of the pre-activation ``x @ W + b`` under ``q``."""
        mean = x @ self.weight_mu + self.bias_mu
        var = x.square() @ F.softplus(self.weight_rho).square() + F.softplus(self.bias_rho).square()
        return mean, var

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample the pre-activation given standard normal ``noise`` of the output's shape."""
        mean, var = self.moments(x)
        return mean + var.sqrt() * noise

    def kl_to_prior(self) -> torch.Tensor:
        """``KL(q || N(0, prior_std^2))`` summed over weights and biases."""
        kl = torch.zeros((), device=self.weight_mu.device, dtype=self.weight_mu.dtype)
        for mu, rho in ((self.weight_mu, self.weight_rho), (self.bias_mu, self.bias_rho)):
            var = F.softplus(rho).square()
            p_var = self.prior_std**2
            kl = kl + (0.5 * torch.log(p_var / var) + (var + mu.square()) / (2 * p_var) - 0.5).sum()
        return kl


class BayesianDynamicsModel(nn.Module):
    """VIME's BNN dynamics model ``p(s' | s, a, theta)`` with ``q(theta)`` factorised Gaussian.

    Inputs and targets are normalised with replay-pool statistics stored as buffers (see
    :meth:`update_normalization`); :meth:`forward`, :meth:`elbo_loss` and :meth:`train_step` work on normalised
    tensors, while :meth:`fit` and the information-gain methods take raw environment arrays.

    :param obs_dim: Observation size.
    :param action_dim: Action size.
    :param hidden_sizes: Hidden layer sizes (ReLU).
    :param prior_std: Prior std of every weight and bias.
    :param likelihood_std: Fixed std of the Gaussian likelihood, in normalised target units.
    :param n_samples: Monte Carlo samples of the network per ELBO / information-gain evaluation.
    :param learning_rate: Adam learning rate.
    :param kl_weight: Weight of ``KL(q || prior)`` in the ELBO loss (the original's ``1 / n_batches``).
    :param step_size: ``lambda`` of the second-order step used by :meth:`information_gain`.
    :param n_updates: Default number of Adam updates per :meth:`fit`.
    :param batch_size: Default minibatch size for :meth:`fit`.
    :param mu_init_std: See :class:`BayesianLinear`.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (32,),
        prior_std: float = 0.5,
        likelihood_std: float = 5.0,
        n_samples: int = 10,
        learning_rate: float = 1e-4,
        kl_weight: float = 0.2,
        step_size: float = 0.01,
        n_updates: int = 500,
        batch_size: int = 10,
        mu_init_std: float | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.prior_std = prior_std
        self.likelihood_std = likelihood_std
        self.n_samples = n_samples
        self.kl_weight = kl_weight
        self.step_size = step_size
        self.n_updates = n_updates
        self.batch_size = batch_size
        sizes = [obs_dim + action_dim, *hidden_sizes, obs_dim]
        self.layers = nn.ModuleList(
            BayesianLinear(n_in, n_out, prior_std, mu_init_std) for n_in, n_out in itertools.pairwise(sizes)
        )
        in_dim = obs_dim + action_dim
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.register_buffer("target_mean", torch.zeros(obs_dim))
        self.register_buffer("target_std", torch.ones(obs_dim))
        # Not part of state_dict(): checkpoint `model.optimizer.state_dict()` separately if needed.
        # The fused kernel: one call per step instead of several per parameter (steps are tiny and many).
        self.optimizer = torch.optim.Adam(self.parameters(), lr=learning_rate, fused=True)

    # ------------------------------------------------------------------ normalisation

    def update_normalization(self, pool: ReplayPool) -> None:
        """Refresh the input/target statistics from the replay pool (done before each :meth:`fit`)."""
        stats = pool.mean_std()
        for buf, value in zip((self.input_mean, self.input_std, self.target_mean, self.target_std), stats):
            buf.copy_(torch.as_tensor(value, dtype=buf.dtype))

    def normalize(
        self, obs: ArrayLike, actions: ArrayLike, next_obs: ArrayLike | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Raw ``(obs, actions[, next_obs])`` to normalised ``(inputs, targets)`` tensors.

        The original divides by ``std + 1e-8`` so that constant dimensions stay finite.
        """
        like = self.input_mean
        obs_t = torch.as_tensor(obs, dtype=like.dtype, device=like.device).reshape(-1, self.obs_dim)
        act_t = torch.as_tensor(actions, dtype=like.dtype, device=like.device).reshape(-1, self.action_dim)
        inputs = (torch.cat([obs_t, act_t], dim=1) - self.input_mean) / (self.input_std + 1e-8)
        if next_obs is None:
            return inputs, None
        nxt = torch.as_tensor(next_obs, dtype=like.dtype, device=like.device).reshape(-1, self.obs_dim)
        return inputs, (nxt - self.target_mean) / (self.target_std + 1e-8)

    # ------------------------------------------------------------------ network

    def sample_noise(
        self, batch_size: int, n_samples: int | None = None, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Standard normal noise for the local reparameterisation: one ``(n_samples, batch_size, out)`` per layer.

        Passing the same noise to :meth:`forward`, :meth:`information_gain` and the reference makes them
        see the same network samples.
        """
        k = self.n_samples if n_samples is None else n_samples
        like = self.input_mean
        return [
            torch.randn(k, batch_size, layer.out_features, generator=generator, dtype=like.dtype, device=like.device)
            for layer in self.layers
        ]

    def forward(
        self,
        inputs: torch.Tensor,
        noise: Sequence[torch.Tensor] | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Monte Carlo predictions of the normalised next state.

        :param inputs: Normalised ``[s, a]``, shape ``(batch, obs_dim + action_dim)``.
        :param noise: Per-layer noise from :meth:`sample_noise`; drawn (from ``generator``) if ``None``.
        :param n_samples: Number of network samples when ``noise`` is ``None``.
        :param generator: Torch generator for the noise.
        :return: Predictions, shape ``(n_samples, batch, obs_dim)``.
        """
        if noise is None:
            noise = self.sample_noise(inputs.shape[0], n_samples, generator)
        # No explicit MC dimension on the input: the first layer's moments broadcast against its (k, ..., out)
        # noise, which computes them once instead of once per sample.
        h = inputs
        last = len(self.layers) - 1
        for i, (layer, eps) in enumerate(zip(self.layers, noise)):
            h = layer(h, eps)
            if i < last:
                h = torch.relu(h)
        return h

    def _nll(self, predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-transition NLL, summed over state dimensions and averaged over the leading MC dimension."""
        z = (predictions - targets) / self.likelihood_std
        nll = 0.5 * z.square() + math.log(self.likelihood_std) + 0.5 * math.log(2 * math.pi)
        return nll.sum(-1).mean(0)

    def kl_to_prior(self) -> torch.Tensor:
        """``KL(q(theta) || p(theta))`` over all layers.

        Computed once over all parameters concatenated: this runs once per (tiny) training step, where the
        number of autograd ops, not the arithmetic, sets the cost.
        """
        mu = torch.cat([p.reshape(-1) for layer in self.layers for p in (layer.weight_mu, layer.bias_mu)])
        rho = torch.cat([p.reshape(-1) for layer in self.layers for p in (layer.weight_rho, layer.bias_rho)])
        var = F.softplus(rho).square()
        p_var = self.prior_std**2
        return (0.5 * (math.log(p_var) - var.log()) + (var + mu.square()) / (2 * p_var) - 0.5).sum()

    def elbo_loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Negative ELBO as in the original ``BNN.loss``: ``kl_weight * KL(q||p) + sum_n E_q[-log p(s'_n|s_n,a_n)]``.

        The NLL is summed over the minibatch and state dimensions and averaged over ``n_samples`` MC samples.

        :param inputs: Normalised inputs, shape ``(batch, obs_dim + action_dim)``.
        :param targets: Normalised next states, shape ``(batch, obs_dim)``.
        """
        predictions = self(inputs, n_samples=n_samples, generator=generator)
        return self._nll(predictions, targets).sum() + self.kl_weight * self.kl_to_prior()

    def train_step(
        self, inputs: torch.Tensor, targets: torch.Tensor, noise: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """One Adam step on :meth:`elbo_loss`; returns the (detached) loss before the step."""
        predictions = self(inputs, noise=noise)
        loss = self._nll(predictions, targets).sum() + self.kl_weight * self.kl_to_prior()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def fit(
        self,
        pool: ReplayPool,
        n_updates: int | None = None,
        batch_size: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> dict[str, float]:
        """Train on the replay pool after a rollout, as the original does once per iteration.

        Does nothing until the pool holds ``pool.min_size`` transitions. Refreshes the normalisation
        statistics first, then takes ``n_updates`` Adam steps on minibatches sampled with replacement.

        :return: ``{"elbo_loss": mean loss over the updates, "n_updates": updates done}``.
        """
        if not pool.ready:
            return {"elbo_loss": float("nan"), "n_updates": 0}
        n_updates = self.n_updates if n_updates is None else n_updates
        batch_size = self.batch_size if batch_size is None else batch_size
        self.update_normalization(pool)
        # Sample and normalise every minibatch at once: cheaper than n_updates small conversions.
        obs, actions, next_obs = pool.sample(n_updates * batch_size, rng)
        inputs, targets = self.normalize(obs, actions, next_obs)
        # Likewise the noise of every update in one draw, and one sync for the losses at the end.
        noise = self.sample_noise(n_updates * batch_size)
        losses = [
            self.train_step(inputs[i : i + batch_size], targets[i : i + batch_size],
                            [eps[:, i : i + batch_size] for eps in noise])
            for i in range(0, n_updates * batch_size, batch_size)
        ]
        return {"elbo_loss": float(torch.stack(losses).mean()), "n_updates": n_updates}

    # ------------------------------------------------------------------ information gain

    def _prepare(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        next_obs: ArrayLike,
        n_samples: int | None,
        generator: torch.Generator | None,
        noise: Sequence[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, Sequence[torch.Tensor]]:
        inputs, targets = self.normalize(obs, actions, next_obs)
        if noise is None:
            noise = self.sample_noise(inputs.shape[0], n_samples, generator)
        return inputs, targets, noise

    @torch.no_grad()
    def _variances(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(F.softplus(lay.weight_rho).square(), F.softplus(lay.bias_rho).square()) for lay in self.layers]

    def information_gain(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        next_obs: ArrayLike,
        step_size: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
        noise: Sequence[torch.Tensor] | None = None,
        block_size: int | None = None,
    ) -> torch.Tensor:
        """Second-order approximation of ``KL(q(phi') || q(phi))`` for every transition, batched.

        For transition ``n`` with loss ``l_n(phi) = E_q[-log p(s'_n | s_n, a_n, theta)]`` (the paper's KL-to-old
        term has zero gradient at ``phi``), one step ``phi' = phi - lambda H^-1 g_n`` with ``H`` the diagonal Hessian
        of ``KL(q(phi') || q(phi))`` at ``phi' = phi`` gives ``KL ~= 0.5 lambda^2 g_n^T H^-1 g_n``, where
        ``H_mu = 1 / sigma^2`` and ``H_rho = 2 sigmoid(rho)^2 / sigma^2``.

        One backward pass gives, for every transition and MC sample, the gradient of the loss w.r.t. each layer's
        pre-activation mean and variance (``delta`` and ``dv``). For a layer whose input ``x`` is the same in every
        MC sample (the first layer, or any layer when ``n_samples == 1``) the per-transition gradients are never
        formed: ``g_W = x_n (x) delta_n`` so ``sum g^2 sigma^2 = (x_n^2 @ sigma^2) . delta_n^2``, and through the
        variance path ``g_rho^2 / H_rho = 2 sigma^4 (x_n^2 (x) dv_n)^2`` (``sigmoid(rho)`` cancels). Other layers
        form ``sum_k x_nk (x) delta_nk`` (the MC average must be taken before squaring) with a batched matmul.

        Transitions are processed in blocks of ``block_size`` (vectorised within a block) only to keep the
        intermediate tensors cache-sized: fresh multi-megabyte tensors cost more in page faults than in arithmetic.

        :param obs: Raw observations, shape ``(n, obs_dim)``.
        :param actions: Raw actions, shape ``(n, action_dim)``.
        :param next_obs: Raw next observations, shape ``(n, obs_dim)``.
        :param step_size: ``lambda``; ``self.step_size`` if ``None``.
        :param n_samples: MC samples averaged in ``l_n``; ``self.n_samples`` if ``None``.
        :param generator: Torch generator for the noise (reproducible results). Noise is drawn block by block,
            so results for a given seed also depend on ``block_size``; to compare with
            :meth:`information_gain_reference`, pass the same explicit ``noise`` to both.
        :param noise: Explicit noise from :meth:`sample_noise` for the whole batch (overrides ``n_samples`` and
            ``generator``).
        :param block_size: Transitions per block; by default about ``2**18`` activations per layer tensor.
        :return: Information gain, shape ``(n,)``, detached.
        """
        lam = self.step_size if step_size is None else step_size
        inputs, targets = self.normalize(obs, actions, next_obs)
        n = inputs.shape[0]
        k = noise[0].shape[0] if noise is not None else (self.n_samples if n_samples is None else n_samples)
        if block_size is None:
            block_size = max(1, 2**18 // (k * max(layer.out_features for layer in self.layers)))
        variances = self._variances()
        quad = torch.empty(n, dtype=inputs.dtype, device=inputs.device)
        for s in range(0, n, block_size):
            sl = slice(s, s + block_size)
            n_block = inputs[sl].shape[0]
            eps = [e[:, sl] for e in noise] if noise is not None else self.sample_noise(n_block, k, generator)
            quad[sl] = self._kl_quadratic_form(inputs[sl], targets[sl], eps, variances)
        return 0.5 * lam**2 * quad

    def _moment_grads(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        noise: Sequence[torch.Tensor],
        variances: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Each layer's input and the gradients of every transition's loss w.r.t. that layer's pre-activation
        means and variances: ``(x, d_means, d_vars)`` per layer, shaped ``(n, .)`` for the first layer (its input
        is the same in every MC sample, its gradients come summed over samples) and ``(k, n, .)`` for the rest."""
        last = len(self.layers) - 1
        # Forward with detached parameters; the first layer's pre-activation moments are the graph leaves. Rows
        # are independent, so row n of d(sum_n l_n)/d(moments) is d l_n / d(moments of transition n).
        # The first layer's input is the same in every MC sample: its moments are computed once, shape (n, out),
        # and broadcast against the (k, n, out) noise, so their gradients come out already summed over samples.
        with torch.enable_grad():
            h = inputs.detach()
            layer_inputs, means, vars_ = [], [], []
            for i, (layer, (w_var, b_var), eps) in enumerate(zip(self.layers, variances, noise)):
                mean = h @ layer.weight_mu.detach() + layer.bias_mu.detach()
                var = h.square() @ w_var + b_var
                if i == 0:
                    mean.requires_grad_(True)
                    var.requires_grad_(True)
                layer_inputs.append(h.detach())
                means.append(mean)
                vars_.append(var)
                h = mean + var.sqrt() * eps
                if i < last:
                    h = torch.relu(h)
            grads = torch.autograd.grad(self._nll(h, targets).sum(), means + vars_)
        return layer_inputs, grads[: len(means)], grads[len(means) :]

    def _kl_quadratic_form(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        noise: Sequence[torch.Tensor],
        variances: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """``g_n^T H^-1 g_n`` for a block of transitions (see :meth:`information_gain`)."""
        n, k = inputs.shape[0], noise[0].shape[0]
        layer_inputs, d_means, d_vars = self._moment_grads(inputs, targets, noise, variances)
        quad = torch.zeros(n, dtype=inputs.dtype, device=inputs.device)
        for (w_var, b_var), x, dm, dv in zip(variances, layer_inputs, d_means, d_vars):
            if x.dim() == 2 or k == 1:
                # Same input in every MC sample: g_W = x_n (x) (sum_k delta_nk), never materialised.
                x_sq = (x if x.dim() == 2 else x[0]).square()
                gb_mu = dm if dm.dim() == 2 else dm[0]  # d l_n / d b_mu
                gb_var = dv if dv.dim() == 2 else dv[0]  # d l_n / d sigma_b^2
                quad += ((x_sq @ w_var) * gb_mu.square()).sum(-1)
                quad += 2.0 * ((x_sq.square() @ w_var.square()) * gb_var.square()).sum(-1)
            else:
                gb_mu, gb_var = dm.sum(0), dv.sum(0)
                # Per-transition weight gradients d l_n / d W_mu and d l_n / d sigma_W^2 (summed over MC samples),
                # a few transitions at a time into reused buffers: fresh multi-MB tensors cost more in page faults
                # than the arithmetic.
                chunk = max(1, _GRAD_CHUNK_ENTRIES // w_var.numel())
                buf_mu = x.new_empty(min(chunk, n), *w_var.shape)
                buf_var = torch.empty_like(buf_mu)
                x_t, x2_t = x.permute(1, 2, 0), x.square().permute(1, 2, 0)  # (n, in, k)
                dm_t, dv_t = dm.permute(1, 0, 2), dv.permute(1, 0, 2)  # (n, k, out)
                w_mu_h_inv, w_rho_h_inv = w_var.flatten(), 2.0 * w_var.square().flatten()
                for s in range(0, n, chunk):
                    sl = slice(s, s + chunk)
                    c = x_t[sl].shape[0]
                    g_mu = torch.bmm(x_t[sl], dm_t[sl], out=buf_mu[:c]).flatten(1)
                    g_var = torch.bmm(x2_t[sl], dv_t[sl], out=buf_var[:c]).flatten(1)
                    quad[sl] += g_mu.square_() @ w_mu_h_inv + g_var.square_() @ w_rho_h_inv
            quad += _h_inv_quadratic(gb_mu, gb_var, b_var)
        return quad

    def chunk_information_gain(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        next_obs: ArrayLike,
        chunk_ids: ArrayLike,
        step_size: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The information gain of whole chunks of transitions, as the original code computes it
        (``kl_batch_size = 64`` consecutive transitions): ``0.5 lambda^2 g_c^T H^-1 g_c`` with ``g_c`` the
        gradient of the chunk's summed loss, i.e. the per-transition gradients summed *before* squaring. A chunk
        of steps that together move the model (a sustained run in one direction) gains more than the same steps
        with gradients that cancel.

        :param chunk_ids: ``(n,)`` integers in ``[0, n_chunks)``: the chunk of each transition.
        :return: ``(n_chunks,)`` information gains, detached (a chunk without transitions gets 0).
        Other arguments as :meth:`information_gain`. All transitions go through one forward/backward pass.
        """
        lam = self.step_size if step_size is None else step_size
        inputs, targets, noise = self._prepare(obs, actions, next_obs, n_samples, generator, noise)
        ids = torch.as_tensor(np.asarray(chunk_ids), dtype=torch.long, device=inputs.device)
        n_chunks = int(ids.max()) + 1 if len(ids) else 0
        # A padded layout (n_chunks, longest chunk, .): rows of a chunk side by side, zeros elsewhere, so that each
        # chunk's gradient sums are one batched matmul; zero rows add nothing to them.
        order = torch.argsort(ids, stable=True)
        counts = torch.bincount(ids, minlength=n_chunks)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(ids), device=ids.device) - starts[ids[order]]
        longest = int(counts.max()) if n_chunks else 0

        def padded(t: torch.Tensor) -> torch.Tensor:
            """``(n, d)`` -> ``(n_chunks, longest, d)``; ``(k, n, d)`` -> ``(n_chunks, k * longest, d)``."""
            rows = t if t.dim() == 2 else t.transpose(0, 1)  # transitions first
            out = rows.new_zeros(n_chunks, longest, *rows.shape[1:])
            out[ids[order], slot] = rows[order]
            return out if t.dim() == 2 else out.transpose(1, 2).reshape(n_chunks, -1, t.shape[-1])

        variances = self._variances()
        layer_inputs, d_means, d_vars = self._moment_grads(inputs, targets, noise, variances)
        quad = torch.zeros(n_chunks, dtype=inputs.dtype, device=inputs.device)
        for (w_var, b_var), x, dm, dv in zip(variances, layer_inputs, d_means, d_vars):
            x_p, dm_p, dv_p = padded(x), padded(dm), padded(dv)  # (the same rows of x and of the gradients)
            g_w_mu = torch.bmm(x_p.transpose(1, 2), dm_p)  # (n_chunks, in, out): sum over the chunk and samples
            g_w_var = torch.bmm(x_p.square().transpose(1, 2), dv_p)
            g_b_mu, g_b_var = dm_p.sum(1), dv_p.sum(1)
            quad += _h_inv_quadratic(g_w_mu, g_w_var, w_var) + _h_inv_quadratic(g_b_mu, g_b_var, b_var)
        return (0.5 * lam**2 * quad).detach()

    # ------------------------------------------------------------------ slow references (tests, debugging)

    def per_transition_grads(
        self, inputs: torch.Tensor, targets: torch.Tensor, noise: Sequence[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Gradients of ``l_n`` w.r.t. every parameter, one per transition, via ``torch.func.vmap(grad(...))``.

        :param inputs: Normalised inputs ``(n, in)``; :param targets: normalised targets ``(n, obs_dim)``;
        :param noise: per-layer noise ``(k, n, out)``.
        :return: Parameter name -> gradients of shape ``(n, *param.shape)``.
        """
        params = {name: p.detach() for name, p in self.named_parameters()}

        def loss_one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, eps: list[torch.Tensor]):
            return self._nll(functional_call(self, p, (x,), {"noise": eps}), y)

        return vmap(grad(loss_one), in_dims=(None, 0, 0, 1))(params, inputs, targets, list(noise))

    @torch.no_grad()
    def _inverse_kl_hessian(self) -> dict[str, torch.Tensor]:
        """Diagonal of ``H^-1``: ``sigma^2`` for means, ``sigma^2 / (2 sigmoid(rho)^2)`` for rhos."""
        params = dict(self.named_parameters())
        h_inv = {}
        for name, p in params.items():
            if name.endswith("_mu"):
                h_inv[name] = F.softplus(params[name[:-3] + "_rho"]).square()
            else:
                h_inv[name] = F.softplus(p).square() / (2.0 * torch.sigmoid(p).square())
        return h_inv

    def information_gain_reference(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        next_obs: ArrayLike,
        step_size: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Slow reference for :meth:`information_gain` from explicit per-transition gradients (same arguments)."""
        lam = self.step_size if step_size is None else step_size
        inputs, targets, noise = self._prepare(obs, actions, next_obs, n_samples, generator, noise)
        grads = self.per_transition_grads(inputs, targets, noise)
        h_inv = self._inverse_kl_hessian()
        quad = sum((g.square() * h_inv[name]).flatten(1).sum(1) for name, g in grads.items())
        return 0.5 * lam**2 * quad.detach()

    def exact_kl_after_step(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        next_obs: ArrayLike,
        step_size: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
        noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Exact ``KL(q(phi') || q(phi))`` after the step ``phi' = phi - lambda H^-1 g_n``, per transition.

        This is the quantity :meth:`information_gain` approximates to second order; use float64 for small
        ``lambda``, the difference of logs cancels badly in float32.
        """
        lam = self.step_size if step_size is None else step_size
        inputs, targets, noise = self._prepare(obs, actions, next_obs, n_samples, generator, noise)
        grads = self.per_transition_grads(inputs, targets, noise)
        h_inv = self._inverse_kl_hessian()
        params = {name: p.detach() for name, p in self.named_parameters()}
        kl = torch.zeros(inputs.shape[0], dtype=inputs.dtype, device=inputs.device)
        for name, mu in params.items():
            if not name.endswith("_mu"):
                continue
            rho_name = name[:-3] + "_rho"
            rho = params[rho_name]
            new_mu = mu - lam * h_inv[name] * grads[name]
            new_rho = rho - lam * h_inv[rho_name] * grads[rho_name]
            std, new_std = F.softplus(rho), F.softplus(new_rho)
            kl_elem = torch.log(std / new_std) + (new_std.square() + (new_mu - mu).square()) / (2 * std.square()) - 0.5
            kl += kl_elem.flatten(1).sum(1)
        return kl.detach()
