"""The reference implementation: a plain-PyTorch VAE with the networks of :class:`pyrobn.VAE`.

Test and benchmark code, not library code: ``tests/test_vae.py`` checks the Pyro
model/guide against it and ``bench/vae.py`` times Pyro's training loop against
:func:`train_reference` (it puts this folder on ``sys.path``).

No Pyro anywhere: the ELBO is written out by hand as in the lecture,

    ELBO(x) = log pθ(x | z) + log p(z) - log qφ(z | x),   z = μφ(x) + σφ(x) ε,

with the KL part either by Monte Carlo (what ``Trace_ELBO`` estimates) or in closed
form, KL = -½ Σ_m (1 + log σ_m² - μ_m² - σ_m²) (what ``TraceMeanField_ELBO`` uses). The
networks come from :func:`pyrobn.nn.encoder_decoder` (or :func:`pyrobn.nn.mlp` with L
logits per feature for the categorical), the same builders the Pyro model uses, and
the random draws come in the same order as Pyro's (subsample indices by ``randperm``,
then ε), so one seed gives one run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pyrobn.nn import encoder_decoder, mlp
from pyrobn.random import seeded

__all__ = ["ReferenceVAE", "train_reference"]


class ReferenceVAE(nn.Module):
    """p(z) = N(0, I), pθ(x | z), qφ(z | x) = N(μ, diag σ²), in plain ``torch.nn``.

    ``likelihood`` as in :class:`pyrobn.VAE` ("bernoulli", "continuous_bernoulli",
    "normal" with a per-feature log-scale, learned or fixed by ``obs_scale``,
    "categorical" with ``levels`` logits per feature and the encoder reading x / (L - 1)).
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        activation: str = "relu",
        obs_scale: float | None = None,
        levels: int | None = None,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.likelihood = likelihood
        self.levels = levels
        if likelihood == "categorical":
            self.encoder = mlp([data_dim, *hidden, 2 * latent_dim], activation)
            self.decoder = mlp([latent_dim, *reversed(hidden), data_dim * levels], activation)
        else:
            self.encoder, self.decoder = encoder_decoder(data_dim, latent_dim, hidden, activation)
        if likelihood == "normal" and obs_scale is None:
            self.log_scale = nn.Parameter(torch.zeros(data_dim))
        elif likelihood == "normal":
            self.register_buffer("log_scale", torch.full((data_dim,), math.log(obs_scale)))

    @classmethod
    def like(cls, vae: nn.Module) -> ReferenceVAE:
        """A reference VAE with the configuration and current weights of a ``pyrobn.VAE``."""
        config = vae.config  # type: ignore[attr-defined]
        ref = cls(
            config["data_dim"],
            config["latent_dim"],
            config["hidden"],
            config["likelihood"],
            config["activation"],
            config["obs_scale"],
            config.get("levels"),
        )
        state = {k.replace("likelihood.", ""): v for k, v in vae.state_dict().items()}
        ref.load_state_dict(state)
        return ref.to(next(vae.parameters()))

    def log_likelihood_given_z(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log pθ(x | z) summed over features, from the decoder output ``out``."""
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(-1)
        if self.likelihood == "categorical":
            logits = out.reshape(*out.shape[:-1], x.shape[-1], self.levels)
            return -F.cross_entropy(logits.transpose(1, -1), x.long(), reduction="none").sum(-1)
        if self.likelihood == "continuous_bernoulli":
            cb = torch.distributions.ContinuousBernoulli(logits=out, validate_args=False)
            return cb.log_prob(x).sum(-1)
        log_scale = self.log_scale
        return (
            -0.5 * ((x - out) / log_scale.exp()).pow(2) - log_scale - 0.5 * math.log(2 * math.pi)
        ).sum(-1)

    def elbo(self, x: torch.Tensor, kl: str = "mc") -> torch.Tensor:
        """One-sample ELBO per row of x (shape (n,)); ``kl="mc"`` or ``"analytic"``."""
        h = self.encoder(x / (self.levels - 1) if self.likelihood == "categorical" else x)
        mu, log_var = h.split(self.latent_dim, dim=-1)
        sigma = torch.exp(0.5 * log_var)
        eps = torch.randn_like(mu)
        z = mu + sigma * eps
        reconstruction = self.log_likelihood_given_z(x, self.decoder(z))
        if kl == "analytic":
            kl_term = -0.5 * (1 + log_var - mu.pow(2) - log_var.exp()).sum(-1)
        else:
            log_q = (-0.5 * eps.pow(2) - torch.log(sigma)).sum(-1)
            log_p = (-0.5 * z.pow(2)).sum(-1)  # the 2π constants cancel
            kl_term = log_q - log_p
        return reconstruction - kl_term


def train_reference(
    ref: ReferenceVAE,
    x: torch.Tensor,
    steps: int,
    batch_size: int | None = 128,
    lr: float = 1e-3,
    kl: str = "mc",
    seed: int | None = None,
) -> list[float]:
    """The plain-PyTorch training loop: Adam on -(N / B) Σ_batch ELBO, one minibatch a step.

    Minibatches are ``randperm(N)[:B]`` (Pyro's subsample draw). Returns the loss of
    every step, as :class:`pyrobn.infer.svi.History` holds them for the Pyro run. ``seed``
    seeds the run as ``fit_svi(seed=...)`` does, and gives the caller's streams back.
    """
    with seeded(seed):
        return _train(ref, x, steps, batch_size, lr, kl)


def _train(
    ref: ReferenceVAE, x: torch.Tensor, steps: int, batch_size: int | None, lr: float, kl: str
) -> list[float]:
    n = x.shape[0]
    subsample = batch_size is not None and batch_size < n
    scale = n / batch_size if subsample else 1.0
    optimizer = torch.optim.Adam(ref.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        xb = x[torch.randperm(n, device=x.device)[:batch_size]] if subsample else x
        loss = -scale * ref.elbo(xb, kl).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return [float(v) for v in torch.stack(losses)] if losses else []
