"""The reference implementation: the GAN game in plain PyTorch, no Pyro anywhere.

The same networks (:func:`~.model.build_networks`, the same weights through
:meth:`ReferenceGAN.like`), the non-saturating losses written with
``binary_cross_entropy_with_logits``, one ``torch.optim.Adam`` per player, and the random
draws in the order of :class:`~.model.AdversarialLoss` (minibatch by ``randperm``, then z,
then the dequantisation noise; the discriminator's dropout on the real and generated rows
in one pass, then on the generated rows again for the generator's loss), so one seed
gives one run. The tests check :meth:`pyrobn.GAN.fit` against :func:`train_reference`
step by step, and the benchmark times one against the other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pyrobn.models.gan.model import build_networks

__all__ = ["ReferenceGAN", "train_reference"]


class ReferenceGAN(nn.Module):
    """Generator and discriminator of a :class:`pyrobn.GAN`, as plain ``torch.nn``."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.config = dict(config)
        self.generator, self.critic = build_networks(
            config["data_dim"],
            config["latent_dim"],
            config["hidden"],
            condition_dim=config["n_classes"],
            bounded=config["levels"] is not None,
            dropout=config["dropout"],
        )

    @classmethod
    def like(cls, gan: nn.Module) -> ReferenceGAN:
        """A reference with the configuration and (copies of) the weights of ``gan``."""
        ref = cls(gan.config)  # type: ignore[arg-type]
        ref.generator.load_state_dict(gan.generator.state_dict())  # type: ignore[attr-defined]
        ref.critic.load_state_dict(gan.critic.state_dict())  # type: ignore[attr-defined]
        if gan.levels is None:  # type: ignore[attr-defined]
            ref.register_buffer("shift", gan.shift.clone())  # type: ignore[attr-defined]
            ref.register_buffer("scale", gan.scale.clone())  # type: ignore[attr-defined]
        return ref.to(next(gan.parameters()))  # type: ignore[attr-defined]

    def _join(self, a: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return a if c is None else torch.cat([a, c], -1)

    def batch(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int | None):
        """(real rows on the game's scale, generated rows, one-hot labels) of one step."""
        n = x.shape[0]
        if batch_size is None or batch_size >= n:
            idx = torch.arange(n, device=x.device)
        else:
            idx = torch.randperm(n, device=x.device)[:batch_size]
        dtype = next(self.parameters()).dtype
        z = torch.empty(idx.shape[0], self.config["latent_dim"], dtype=dtype, device=x.device)
        z.normal_()
        c = None
        if y is not None:
            c = F.one_hot(y[idx], self.config["n_classes"]).to(dtype)
        fake = self.generator(self._join(z, c))
        levels = self.config["levels"]
        if levels is not None:
            u = torch.rand(idx.shape[0], self.config["data_dim"], dtype=dtype, device=x.device)
            real = 2 * (x[idx].to(dtype) + u) / levels - 1
        else:
            real = (x[idx] - self.shift) / self.scale
        return real, fake, c

    def critic_loss(self, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None):
        """L_D: one pass of the discriminator over the real rows, then the generated ones."""
        logits = self.critic(
            self._join(torch.cat([real, fake]), None if c is None else torch.cat([c, c]))
        )
        logits = logits.squeeze(-1)
        n = len(real)
        ones, zeros = torch.ones_like(logits[:n]), torch.zeros_like(logits[n:])
        return F.binary_cross_entropy_with_logits(
            logits[:n], ones
        ) + F.binary_cross_entropy_with_logits(logits[n:], zeros)

    def bce(self, x: torch.Tensor, c: torch.Tensor | None, label: float) -> torch.Tensor:
        """-(1/B) Σ log q(y = label | x_i) by ``binary_cross_entropy_with_logits``."""
        logits = self.critic(self._join(x, c)).squeeze(-1)
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def train_reference(
    ref: ReferenceGAN,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    steps: int,
    batch_size: int | None = 128,
    lr: float = 2e-4,
    betas: tuple[float, float] = (0.5, 0.999),
    seed: int | None = None,
) -> tuple[list[float], list[float]]:
    """The plain-PyTorch game: per step a discriminator update on L_D (real against the
    detached generated rows), then a generator update on L_G against the updated
    discriminator. Returns (L_D per step, L_G per step)."""
    if seed is not None:
        torch.manual_seed(seed)
    opt_d = torch.optim.Adam(ref.critic.parameters(), lr=lr, betas=betas)
    opt_g = torch.optim.Adam(ref.generator.parameters(), lr=lr, betas=betas)
    ref.train()
    d_losses, g_losses = [], []
    for _ in range(steps):
        real, fake, c = ref.batch(x, y, batch_size)
        d_loss = ref.critic_loss(real, fake.detach(), c)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = ref.bce(fake, c, 1.0)
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        d_losses.append(d_loss.detach())
        g_losses.append(g_loss.detach())
    ref.eval()
    return [float(v) for v in d_losses], [float(v) for v in g_losses]
