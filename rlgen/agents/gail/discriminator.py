"""GAIL's discriminator ``D(s, a)``: the probability that a state-action pair comes from the expert.

Convention (as in the original code, github.com/openai/imitation): the network outputs a logit ``z`` and
``D = sigmoid(z)`` is the probability of *expert*; expert pairs are labelled 1, policy pairs 0. Rewards are
computed from the logit without ever forming ``log(1 - D)`` from ``D``:

* ``-log(1 - D) = softplus(z)``: positive, so a policy gains by surviving longer -- for tasks whose episodes end
  on failure (locomotion). The default.
* ``log D = -softplus(-z)``: negative, so a policy gains by ending episodes sooner -- for tasks that end on
  success (MountainCar, Acrobot); the original code's ``favor_zero_expert_reward``.
* ``log D - log(1 - D) = z`` (``logit``; AIRL's and DAC's): no sign of its own, so whether an episode's end pays is
  left to what D says of the absorbing state (``absorbing``, below), as in DAC. Linear in ``z``: where D tells the
  policy from the expert almost surely, its reward still ranks policy pairs, where ``softplus(z)`` squeezes them
  all to ~0.

With ``absorbing`` (Kostrikov et al. 2019, "Discriminator-Actor-Critic", section 4.2) D also scores the absorbing
state an episode enters when it terminates (not when it is cut by a time limit): an input of its own, a zero
standardised observation and action plus an indicator feature, drawn as often as episodes end by termination.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rlgen.common.normalization import RunningNorm

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}
REWARD_TYPES = ("neg_log_1_minus_d", "log_d", "logit")


class Discriminator(nn.Module):
    """An MLP from ``(s, a)`` to the logit of ``P(expert | s, a)``.

    :param observation_space: a ``Box``; observations are flattened.
    :param action_space: ``Box`` actions enter as they are, ``Discrete`` actions one-hot (the original code
        instead gives the network one output per action and reads the taken action's).
    :param hidden_sizes: hidden layer widths (the paper: two layers of 100).
    :param activation: ``tanh`` (the paper), ``relu`` or ``elu``.
    :param normalize_input: standardise the input with a :class:`RunningNorm` (observations and ``Box``
        actions; one-hot actions are left as they are).
    :param absorbing: one more input, 1 for the absorbing state (whose other inputs are then 0) and 0 otherwise.
    :param obs_features: D sees only the first N of the flattened observation's features (None: all). On
        MuJoCo's Humanoid the first 45 are the joint positions and velocities; the other 303 (body inertias and
        velocities, actuator and contact forces) follow from them and the action.
    """

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Space,
                 hidden_sizes: Sequence[int] = (100, 100), activation: str = "tanh", normalize_input: bool = True,
                 absorbing: bool = False, obs_features: int | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")
        full_dim = int(torch.tensor(observation_space.shape).prod().item())
        if obs_features is not None and not 0 < int(obs_features) <= full_dim:
            raise ValueError(f"obs_features must be in 1..{full_dim} (the observation's size), got {obs_features}")
        self.obs_dim = full_dim if obs_features is None else int(obs_features)
        self.discrete = isinstance(action_space, spaces.Discrete)
        if self.discrete:
            self.n_actions = int(action_space.n)
            self.action_start = int(action_space.start)
            act_dim, norm_dim = self.n_actions, self.obs_dim
        elif isinstance(action_space, spaces.Box):
            act_dim = int(torch.tensor(action_space.shape).prod().item())
            norm_dim = self.obs_dim + act_dim
        else:
            raise TypeError(f"the discriminator supports Box and Discrete actions, not {action_space}")
        self.norm = RunningNorm(norm_dim) if normalize_input else None
        self.absorbing = bool(absorbing)
        layers: list[nn.Module] = []
        width = self.obs_dim + act_dim + int(self.absorbing)
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), ACTIVATIONS[activation]()]
            width = int(size)
        out = nn.Linear(width, 1)
        nn.init.zeros_(out.weight)  # D = 1/2 everywhere at the start, as in the original code
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*layers, out)

    def _normalised_part(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        obs = obs.reshape(len(obs), -1)[:, :self.obs_dim].float()
        return obs if self.discrete else torch.cat([obs, actions.reshape(len(actions), -1).float()], dim=1)

    def update_normalizer(self, obs: torch.Tensor, actions: torch.Tensor) -> None:
        if self.norm is not None:
            self.norm.update(self._normalised_part(obs, actions))

    def inputs(self, obs: torch.Tensor, actions: torch.Tensor, absorbing: torch.Tensor | None = None) -> torch.Tensor:
        """The network's input for ``(s, a)``: standardised, with one-hot actions where they are discrete; with
        ``absorbing`` (a ``(B,)`` mask; None: no row is), the absorbing-state rows are 0 but for their indicator."""
        x = self._normalised_part(obs, actions)
        if self.norm is not None:
            x = self.norm(x)
        if self.discrete:
            x = torch.cat([x, F.one_hot(actions.reshape(-1).long() - self.action_start, self.n_actions).float()], 1)
        if self.absorbing:
            flag = x.new_zeros((len(x), 1)) if absorbing is None else absorbing.reshape(-1, 1).to(x.dtype)
            x = torch.cat([x * (1 - flag), flag], 1)
        elif absorbing is not None:
            raise ValueError("this discriminator was built without absorbing=True")
        return x

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, absorbing: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``z`` of shape ``(B,)``; ``D = sigmoid(z)``."""
        return self.net(self.inputs(obs, actions, absorbing)).squeeze(-1)

    def absorbing_logit(self) -> torch.Tensor:
        """The logit of the absorbing state (a 0-dim tensor)."""
        if not self.absorbing:
            raise ValueError("this discriminator was built without absorbing=True")
        x = torch.zeros((1, self.net[0].in_features), device=self.net[0].weight.device)
        x[0, -1] = 1.0
        return self.net(x).reshape(())


def reward_from_logits(logits: torch.Tensor, reward_type: str = "neg_log_1_minus_d") -> torch.Tensor:
    """GAIL's reward from discriminator logits, computed stably for any logit."""
    if reward_type == "neg_log_1_minus_d":
        return F.softplus(logits)
    if reward_type == "log_d":
        return -F.softplus(-logits)
    if reward_type == "logit":
        return logits
    raise ValueError(f"unknown reward type {reward_type!r}; use one of {', '.join(REWARD_TYPES)}")


def bernoulli_entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``Bernoulli(sigmoid(z))``: ``p softplus(-z) + (1 - p) softplus(z)``."""
    p = torch.sigmoid(logits)
    return p * F.softplus(-logits) + (1 - p) * F.softplus(logits)


def discriminator_loss(policy_logits: torch.Tensor, expert_logits: torch.Tensor,
                       entropy_weight: float = 0.0) -> torch.Tensor:
    """Logistic loss with each class weighted equally (expert = 1, policy = 0), minus ``entropy_weight`` times
    the mean entropy of D's predictions (the original code's regulariser, 1e-3 there)."""
    loss = F.binary_cross_entropy_with_logits(policy_logits, torch.zeros_like(policy_logits)) + \
        F.binary_cross_entropy_with_logits(expert_logits, torch.ones_like(expert_logits))
    if entropy_weight:
        loss = loss - entropy_weight * (bernoulli_entropy_from_logits(policy_logits).mean()
                                        + bernoulli_entropy_from_logits(expert_logits).mean())
    return loss
