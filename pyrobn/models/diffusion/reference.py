"""The reference implementation: the diffusion bound written out in plain PyTorch.

No Pyro anywhere. The terms are written from the closed forms of notes 2.2.2.4 in their
signal-to-noise form (Kingma et al. 2021),

    -log p(x) <= ½ Σ_d (α_T² x_d² + σ_T² - 1 - log σ_T²)                 (prior)
                 + Σ_{t=2}^T ½ (SNR_{t-1} - SNR_t) E ||x - x̂(z_t, t)||²     (diffusion)
                 - E log p(x | z_1),                                         (decoder)

rather than through the Gaussian KLs Pyro evaluates, so that the two agree only if both
are right. The network is the model's own (:class:`~.network.Denoiser`, the same weights
through :meth:`ReferenceDiffusion.like`) and the random draws come in the order of the
Pyro guide (subsample indices by ``randperm``, then the normals of z_T, of the time
plate's steps, of their z_{t-1}, of z_1, then the label dropout of the model), so one
seed gives one run. The tests check the Pyro model/guide against it, and the benchmark
times ``fit`` against :func:`train_reference`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pyrobn.models.diffusion.network import Denoiser
from pyrobn.models.diffusion.schedule import Schedule

__all__ = ["ReferenceDiffusion", "train_reference"]

_GOLDEN = 0.6180339887498949


class ReferenceDiffusion(nn.Module):
    """The bound of a :class:`~pyrobn.models.diffusion.DiffusionModel`, in plain torch."""

    def __init__(self, config: dict, net: Denoiser, decoder_logits: torch.Tensor | None) -> None:
        super().__init__()
        self.config = dict(config)
        self.net = net
        self.decoder_logits = None if decoder_logits is None else nn.Parameter(decoder_logits)
        sched = Schedule(self.config["schedule"], self.config["timesteps"])
        self.T = sched.timesteps
        self.alpha_bar = sched.alpha_bar
        self.levels = self.config["levels"]
        self.n_classes = self.config["n_classes"]
        self.p_uncond = self.config["p_uncond"]

    @classmethod
    def like(cls, model: nn.Module) -> ReferenceDiffusion:
        """A reference sharing the configuration and (copies of) the weights of ``model``."""
        cfg = model.config  # type: ignore[attr-defined]
        levels = cfg["levels"]
        net = Denoiser(
            cfg["data_dim"],
            levels if levels is not None and cfg["prediction"] == "data" else 1,
            cfg["hidden"],
            timesteps=cfg["timesteps"],
            condition_dim=cfg["n_classes"] + 1 if cfg["n_classes"] else 0,
            activation=cfg["activation"],
            time_dim=cfg["time_dim"],
            dropout=cfg["dropout"],
        )
        net.load_state_dict(model.net.state_dict())  # type: ignore[attr-defined]
        logits = getattr(model, "decoder_logits", None)
        ref = cls(cfg, net, None if logits is None else logits.detach().clone())
        ref.to(next(model.parameters()))  # type: ignore[attr-defined]
        if not model.discrete:  # type: ignore[attr-defined]
            ref.register_buffer("shift", model.shift.clone())  # type: ignore[attr-defined]
            ref.register_buffer("scale", model.scale.clone())  # type: ignore[attr-defined]
        return ref

    # ------------------------------------------------------------------ pieces
    def _coef(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(like.device)[t].to(like.dtype).unsqueeze(-1)

    def alpha(self, t, like):
        return self._coef(self.alpha_bar.sqrt(), t, like)

    def sigma(self, t, like):
        return self._coef((1 - self.alpha_bar).sqrt(), t, like)

    def snr(self, t, like):
        return self._coef(self.alpha_bar / (1 - self.alpha_bar), t, like)

    def x_tilde(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.levels is not None:
            return 2 * x.to(dtype) / (self.levels - 1) - 1
        return (x - self.shift) / self.scale

    def label(self, y, n, dtype, drop):
        if not self.n_classes:
            return None
        labels = y
        if drop and self.p_uncond > 0:
            dropped = torch.rand(labels.shape, device=labels.device) < self.p_uncond
            labels = torch.where(dropped, torch.full_like(labels, self.n_classes), labels)
        return F.one_hot(labels, self.n_classes + 1).to(dtype)

    def x_hat_and_logits(self, z, t, c):
        """x̂(z_t, t) and the level logits of p(x | z_t) (or None), from the network."""
        out = self.net(z, t, c)
        alpha, sigma = self.alpha(t, z), self.sigma(t, z)
        if self.config["prediction"] == "noise":
            x_hat = (z - sigma * out[..., 0]) / alpha
            if self.levels is None:
                return x_hat, None
            v = torch.linspace(-1, 1, self.levels, dtype=z.dtype, device=z.device)
            gauss = -((z[..., None] - alpha[..., None] * v) ** 2) / (2 * sigma[..., None] ** 2)
            return x_hat, self.decoder_logits + gauss
        if self.levels is None:
            return out[..., 0], None
        v = torch.linspace(-1, 1, self.levels, dtype=z.dtype, device=z.device)
        logits = out - (z[..., None] - alpha[..., None] * v) ** 2 / (2 * sigma[..., None] ** 2)
        return torch.softmax(logits, -1) @ v, logits

    def decoder_nll(self, x_obs, x_tilde, z1, c):
        """-log p(x | z_1) per row (nats; for real data on the scale of x)."""
        t1 = torch.ones(z1.shape[:-1], dtype=torch.long, device=z1.device)
        x_hat, logits = self.x_hat_and_logits(z1, t1, c)
        if self.levels is not None:
            return -torch.log_softmax(logits, -1).gather(-1, x_obs[..., None]).squeeze(-1).sum(-1)
        s = self.sigma(t1, z1) / self.alpha(t1, z1)
        gauss = 0.5 * ((x_tilde - x_hat) / s) ** 2 + torch.log(s) + 0.5 * math.log(2 * math.pi)
        return gauss.sum(-1) + self.scale.log().sum()

    def prior_kl(self, x_tilde):
        T = torch.tensor(self.T)
        a2, s2 = self.alpha(T, x_tilde) ** 2, self.sigma(T, x_tilde) ** 2
        return 0.5 * (a2 * x_tilde**2 + s2 - 1 - torch.log(s2)).sum(-1)

    def diffusion_kl(self, x_tilde, z_t, t, c):
        """½ (SNR_{t-1} - SNR_t) ||x - x̂(z_t, t)||² per row."""
        x_hat, _ = self.x_hat_and_logits(z_t, t, c)
        weight = 0.5 * (self.snr(t - 1, z_t) - self.snr(t, z_t))
        return (weight * (x_tilde - x_hat) ** 2).sum(-1)

    # ------------------------------------------------------------------ the losses
    def loss(self, x, y=None, batch_size=None, time_samples=None, drop=False):
        """-ELBO of one draw, in the random order of the Pyro guide, then model."""
        n = x.shape[0]
        if batch_size is None or batch_size >= n:
            idx = torch.arange(n, device=x.device)
        else:
            idx = torch.randperm(n, device=x.device)[:batch_size]
        xb = x[idx]
        dtype = next(self.net.parameters()).dtype
        xt = self.x_tilde(xb, dtype)
        B, D = xt.shape
        T = self.T
        eps_T = torch.empty(B, D, dtype=dtype, device=x.device).normal_()  # the z_T site
        kl = xt.new_zeros(B)
        if time_samples is None:  # the whole chain, z_{t-1} ~ q(z_{t-1} | z_t, x)
            ab = self.alpha_bar
            steps = torch.full((B,), T, dtype=torch.long, device=x.device)
            z = self.alpha(steps, xt) * xt + self.sigma(steps, xt) * eps_T
            chain = []
            for t in range(T, 1, -1):
                beta = 1 - ab[t] / ab[t - 1]
                a = float(ab[t - 1].sqrt() * beta / (1 - ab[t]))
                b = float((1 - beta).sqrt() * (1 - ab[t - 1]) / (1 - ab[t]))
                sd = float((beta * (1 - ab[t - 1]) / (1 - ab[t])).sqrt())
                chain.append((t, z))
                z = a * xt + b * z + sd * torch.empty(B, D, dtype=dtype, device=x.device).normal_()
            z1 = z
            c = self.label(None if y is None else y[idx], B, dtype, drop)
            for t, z_t in chain:
                kl = kl + self.diffusion_kl(xt, z_t, torch.full((B,), t, device=x.device), c)
        else:
            if T >= 2:
                K = min(time_samples, T - 1)
                if K < T - 1:
                    strata = torch.randperm(T - 1, device=x.device)[:K]
                else:
                    strata = torch.arange(T - 1, device=x.device)
                offset = ((idx.double() * _GOLDEN) % 1.0 * (T - 1)).long()
                t = (strata[:, None] + offset[None, :]) % (T - 1) + 2
                eps = torch.empty(K, B, D, dtype=dtype, device=x.device).normal_()
                torch.empty(K, B, D, dtype=dtype, device=x.device).normal_()  # z_{t-1}'s draw
                z_t = self.alpha(t, xt) * xt + self.sigma(t, xt) * eps
            eps1 = torch.empty(B, D, dtype=dtype, device=x.device).normal_()
            c = self.label(None if y is None else y[idx], B, dtype, drop)
            if T >= 2:
                kl = self.diffusion_kl(xt, z_t, t, c).sum(0) * ((T - 1) / K)
            one = torch.ones(B, dtype=torch.long, device=x.device)
            z1 = self.alpha(one, xt) * xt + self.sigma(one, xt) * eps1
        rows = self.prior_kl(xt) + kl + self.decoder_nll(xb, xt, z1, c)
        return rows.sum() * (n / B)


def train_reference(
    ref: ReferenceDiffusion,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    steps: int,
    batch_size: int | None = 128,
    time_samples: int = 4,
    lr: float = 1e-3,
    seed: int | None = None,
) -> list[float]:
    """The plain-PyTorch training loop: Adam on the -ELBO of :meth:`ReferenceDiffusion.loss`,
    one minibatch a step, label dropout on; returns the loss of every step."""
    if seed is not None:
        torch.manual_seed(seed)
    optimizer = torch.optim.Adam(ref.parameters(), lr=lr)
    ref.train()
    losses = []
    for _ in range(steps):
        loss = ref.loss(x, y, batch_size, time_samples, drop=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    ref.eval()
    return [float(v) for v in torch.stack(losses)] if losses else []
