"""The generative adversarial network as Pyro programs (notes 2.2.2.3, Figura 10).

The chapter reads the GAN as a latent-variable model p(x, z) = p(z) p(x | z), with
p(z) = N(0, I) and a generator G giving x = G(z) (p(x | z) is a point mass), plus an
external classifier q(y | x), the discriminator, that tells real data (y = 1) from
generated samples (y = 0) and is discarded after training. Both are Pyro programs here:

    model(x)          z ~ N(0, I);  x̂ = G(z)           (site "x": the generated rows)
    discriminator(x)  y ~ Bernoulli(σ(D(x)))           (site "y", observed: real or not)

and training is the adversarial game of 2.2.2.3 with the non-saturating generator loss
(Goodfellow et al. 2014), one minibatch of B rows a step, in turn:

    discriminator:  L_D = -(1/B) Σ_i [log q(y=1 | x_i) + log q(y=0 | G(z_i))]
    generator:      L_G = -(1/B) Σ_i log q(y=1 | G(z_i))    (with the updated D)

through :func:`pyrobn.infer.fit_svi` with :class:`AdversarialLoss`, whose ``update`` makes
the two updates of a step: the loop's progress bar, history (L_D + L_G per step),
divergence guard (parameters rolled back to the last finite step) and checkpoints apply
as they do to an ELBO. A GAN has **no likelihood**: it is scored by its samples (the
benchmark's Fréchet distance and, conditional, the class accuracy of its samples).

Data on L integer levels (the book's grey levels) are dequantised for the discriminator,
x -> 2 (x + u) / L - 1 with u ~ U(0, 1), the generator's output lies in (-1, 1) (tanh)
and a sample's level is ⌊L (x̂ + 1) / 2⌋: the game is played on the dequantised density,
whose levels are the data's. Real-valued data are standardised by the first fit.
A class-conditional GAN (eq. 19) feeds a one-hot label to both networks (Mirza &
Osindero 2014), the real rows' labels to both players.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pyrobn.errors import ConfigurationError
from pyrobn.infer.optim import FusedAdam
from pyrobn.infer.result import FitResult
from pyrobn.infer.svi import fit_svi
from pyrobn.models.base import PyrobnModule
from pyrobn.models.neural import LevelData, minibatch_schedule, standardize_once
from pyrobn.nn import check_sizes
from pyrobn.random import generator
from pyrobn.validation import (
    check_finite,
    check_int,
    check_positive,
    check_shape,
    to_real_tensor,
)

__all__ = ["GAN", "AdversarialLoss", "build_networks"]


def build_networks(
    data_dim: int,
    latent_dim: int,
    hidden: Sequence[int],
    *,
    condition_dim: int = 0,
    bounded: bool = True,
    dropout: float = 0.0,
) -> tuple[nn.Sequential, nn.Sequential]:
    """The generator G: R^(L+C) -> R^D (ReLU; tanh output if ``bounded``) and
    the discriminator D: R^(D+C) -> R (LeakyReLU(0.2), dropout), mirrored widths.

    >>> g, d = build_networks(64, 16, (128,))
    >>> d(g(torch.zeros(3, 16))).shape
    torch.Size([3, 1])
    """
    hidden = check_sizes(hidden, "hidden")
    layers: list[nn.Module] = []
    width = latent_dim + condition_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, data_dim))
    if bounded:
        layers.append(nn.Tanh())
    gen = nn.Sequential(*layers)
    layers = []
    width = data_dim + condition_dim
    for h in reversed(hidden):
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, 1))
    return gen, nn.Sequential(*layers)


class GAN(LevelData, PyrobnModule):
    """A GAN (notes 2.2.2.3): generator p(x | z) as the Pyro model, discriminator q(y | x).

    Args:
        data_dim: D.
        latent_dim: the size of z ~ N(0, I).
        hidden: the generator's hidden widths (the discriminator mirrors them).
        levels: L for data on the integer levels 0..L-1 (dequantised, see the module
            docstring); ``None`` for real-valued data.
        n_classes: > 0 for a class-conditional GAN (eq. 19).
        dropout: dropout in the discriminator's hidden layers.

    >>> gan = GAN(2, latent_dim=4, hidden=(64, 64))
    >>> gan.sample(5, seed=0).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        data_dim: int,
        *,
        latent_dim: int = 16,
        hidden: Sequence[int] = (256, 256),
        levels: int | None = None,
        n_classes: int = 0,
        dropout: float = 0.0,
    ) -> None:
        data_dim = check_int(data_dim, "data_dim")
        latent_dim = check_int(latent_dim, "latent_dim")
        hidden = check_sizes(hidden, "hidden")
        if levels is not None:
            levels = check_int(levels, "levels", low=2)
        n_classes = check_int(n_classes, "n_classes", low=0)
        if n_classes == 1:
            raise ConfigurationError("n_classes must be 0 (unconditional) or at least 2")
        if not isinstance(dropout, int | float) or not 0 <= dropout < 1:
            raise ConfigurationError(f"dropout must lie in [0, 1), got {dropout!r}")
        super().__init__(
            data_dim=data_dim, latent_dim=latent_dim, hidden=list(hidden), levels=levels,
            n_classes=n_classes, dropout=float(dropout),
        )  # fmt: skip
        self.data_dim, self.latent_dim, self.levels = data_dim, latent_dim, levels
        self.n_classes = n_classes
        gen, disc = build_networks(
            data_dim, latent_dim, hidden, condition_dim=n_classes,
            bounded=levels is not None, dropout=float(dropout),
        )  # fmt: skip
        # plain torch modules: the Pyro programs register their parameters once per call
        # (pyro.module), not once per access as PyroModule layers would (bench: ~25% of a
        # step of the small networks here)
        self.generator, self.critic = gen, disc
        if levels is None:
            self.register_buffer("shift", torch.zeros(data_dim))
            self.register_buffer("scale", torch.ones(data_dim))
            self.register_buffer("standardized", torch.tensor(False))
        self.eval()

    # ------------------------------------------------------------------ harness protocol
    #: a GAN has no likelihood (the benchmark scores its samples only)
    nll_kind = "none"

    # ------------------------------------------------------------------ pieces
    def _one_hot(self, y: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        return None if y is None else F.one_hot(y, self.n_classes).to(dtype)

    @staticmethod
    def _join(a: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return a if c is None else torch.cat([a, c], -1)

    def to_game_scale(self, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Real rows on the scale of the game: 2 (x + u) / L - 1 (levels, u ~ U(0, 1)
        given), or the standardised rows."""
        if self.discrete:
            assert u is not None
            return 2 * (x.to(u.dtype) + u) / self.levels - 1  # type: ignore[operator]
        return (x - self.shift) / self.scale

    def to_data_scale(self, x_hat: torch.Tensor) -> torch.Tensor:
        """The generator's output on the data's scale: the level ⌊L (x̂ + 1) / 2⌋ (long),
        or x̂ sd + mean."""
        if self.discrete:
            levels = torch.floor((x_hat + 1) * self.levels / 2)  # type: ignore[operator]
            return levels.clamp(0, self.levels - 1).long()  # type: ignore[operator]
        return x_hat * self.scale + self.shift

    # ------------------------------------------------------------------ Pyro programs
    def model(
        self, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int | None = None
    ) -> torch.Tensor:
        """The generator, p(z) p(x | z): for each row of a subsample of the data plate
        (``batch_size`` rows), z ~ N(0, I) and the deterministic site ``"x"`` = G(z, y)
        on the game's scale. Returns the generated rows (B, D)."""
        generator = self._registered("generator")
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device) as idx:
            dtype = self.dtype
            zeros = torch.zeros(idx.shape[0], self.latent_dim, dtype=dtype, device=x.device)
            z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
            c = self._one_hot(None if y is None else y[idx], dtype)
            return pyro.deterministic("x", generator(self._join(z, c)), event_dim=1)

    def guide(
        self, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int | None = None
    ) -> None:
        """Empty: a GAN has no encoder, z is drawn from its prior (2.2.2.3)."""

    def _registered(self, name: str) -> nn.Module:
        """The network ``name``, its parameters registered in Pyro's param store under
        this model's name (so that an optimiser run through Pyro sees and trains them)."""
        return pyro.module(f"{self._pyro_name}.{name}", getattr(self, name))

    def _sync_param_store(self) -> None:
        """Drop stale param-store entries under this model's name (a copy's, or a
        ``.to()``'s), so that registration hands out the networks' own tensors."""
        store = pyro.get_param_store()
        for name in ("generator", "critic"):
            for pname, param in getattr(self, name).named_parameters():
                full = f"{self._pyro_name}.{name}$$${pname}"
                if full in store and store[full].unconstrained() is not param:
                    del store[full]

    def critic_distribution(self, x: torch.Tensor, c: torch.Tensor | None = None) -> Any:
        """q(y | x) = Bernoulli(σ(D(x, c))), batch shape (n,); x on the game's scale."""
        logits = self.critic(self._join(x, c)).squeeze(-1)
        return dist.Bernoulli(logits=logits, validate_args=False)

    def discriminator(
        self, x: torch.Tensor, real: torch.Tensor, c: torch.Tensor | None = None
    ) -> Any:
        """q(y | x) as a Pyro program (Figura 10): y ~ Bernoulli(σ(D(x, c))), observed as
        ``real`` (1 for a data row, 0 for a generated one); x on the game's scale."""
        self._registered("critic")
        q = self.critic_distribution(x, c)
        with pyro.plate("data", x.shape[0], device=x.device):
            pyro.sample("y", q, obs=real)
        return q

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        optim: Any = None,
        seed: int | None = None,
        progress: bool = True,
        **svi_kwargs: Any,
    ) -> GAN:
        """Play the adversarial game of 2.2.2.3 through :func:`pyrobn.infer.fit_svi`.

        Give ``steps`` (each a discriminator update, then a generator update, on one
        minibatch of ``batch_size`` rows) or ``epochs`` (ceil(n / batch_size) steps
        each). Adam with ``lr`` and ``betas`` (Radford et al. 2016's 2e-4, (0.5, 0.999)),
        one optimiser state per parameter. Other keyword arguments (``callback``,
        ``checkpoint``, ``resume``, ...) go to ``fit_svi``. ``losses_`` holds L_D and L_G
        per step; ``fit_result_.objective`` is -(L_D + L_G) per step (no likelihood).

        Raises:
            TrainingDiverged: a loss or a parameter became NaN or inf; the parameters are
                those before the step that broke them.
        """
        x = self._check_x(x)
        n = x.shape[0]
        y_t = self._check_y(y, n)
        check_positive(lr, "lr")
        batch, _, total = minibatch_schedule(n, steps, epochs, check_int(batch_size, "batch_size"))
        if not self.discrete:
            standardize_once(x, self.shift, self.scale, self.standardized)
        game = AdversarialLoss(self)
        self._sync_param_store()
        optim = optim if optim is not None else FusedAdam(lr=lr, betas=tuple(betas))
        svi_kwargs.setdefault("description", type(self).__name__)
        self.train()
        try:
            history = fit_svi(
                self.model, self.guide, x, y_t, batch if batch < n else None,
                loss=game, optim=optim, steps=total, seed=seed, progress=progress,
                **svi_kwargs,
            )  # fmt: skip
        finally:
            self.eval()
            self.losses_ = {"discriminator": game.d_losses, "generator": game.g_losses}
        return self._set_result(FitResult.from_history(history, objective_name="-(L_D + L_G)"))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self, n: int, *, y: Any = None, seed: int | None = None, raw: bool = False
    ) -> torch.Tensor:
        """Ancestral samples (notes 2.1): z ~ N(0, I), x = G(z, y); shape (n, D).

        Levels (long) for discrete data (``raw=True``: the generator's output on the
        game's scale, in (-1, 1)); real rows otherwise. Draws come from a local generator.
        """
        n = check_int(n, "n")
        c = self._one_hot(self._check_y(y, n), self.dtype)
        gen = generator(seed, self.device)
        z = torch.randn(n, self.latent_dim, generator=gen, device=self.device, dtype=self.dtype)
        x_hat = self.generator(self._join(z, c))
        return x_hat if raw else self.to_data_scale(x_hat)

    @torch.no_grad()
    def generate(self, z: Any, *, y: Any = None, raw: bool = False) -> torch.Tensor:
        """G(z, y) for given latent rows z (n, latent_dim): interpolations (2.2.4.2)."""
        z = to_real_tensor(z, "z", dtype=self.dtype, device=self.device)
        check_shape(z, (None, self.latent_dim), "z")
        check_finite(z, "z")
        c = self._one_hot(self._check_y(y, z.shape[0]), self.dtype)
        x_hat = self.generator(self._join(z, c))
        return x_hat if raw else self.to_data_scale(x_hat)

    @torch.no_grad()
    def discriminate(self, x: Any, *, y: Any = None, seed: int | None = None) -> torch.Tensor:
        """q(y = 1 | x): the discriminator's probability that each row is real data."""
        x = self._check_x(x)
        c = self._one_hot(self._check_y(y, x.shape[0]), self.dtype)
        u = None
        if self.discrete:
            gen = generator(seed, self.device)
            u = torch.rand(x.shape, generator=gen, device=self.device, dtype=self.dtype)
        return torch.sigmoid(self.critic(self._join(self.to_game_scale(x, u), c)).squeeze(-1))

    # ------------------------------------------------------------------ contract
    def graph(self) -> Any:
        """Figura 10: z -> x <- θ (the generator), and the discarded classifier x -> y <- φ."""
        from pyrobn.graph import GraphNode, ModelGraph

        nodes = [
            GraphNode("z", "latent", label="$z$"),
            GraphNode("x", "observed", discrete=self.discrete, label="$x$"),
            GraphNode("y_real", "observed", discrete=True, label="$y$"),
            GraphNode("theta", "parameter", label=r"$\theta$"),
            GraphNode("phi", "parameter", label=r"$\phi$"),
        ]
        edges = [("z", "x"), ("theta", "x"), ("x", "y_real"), ("phi", "y_real")]
        members = ["z", "x", "y_real"]
        if self.n_classes:
            nodes.insert(0, GraphNode("c", "observed", discrete=True, label="$c$"))
            edges += [("c", "x"), ("c", "y_real")]
            members.insert(0, "c")
        return ModelGraph(
            nodes, edges, plates={"data": (members, "N")},
            title="GAN: generator p(z) p(x | z), discriminator q(y | x)",
        )  # fmt: skip

    def _check_state(self) -> None:
        super()._check_state()
        if not self.discrete and not bool((self.scale > 0).all()):
            from pyrobn.errors import NonFiniteError

            raise NonFiniteError("the standardisation scale must be positive")

    def __repr__(self) -> str:
        kind = f"levels={self.levels}" if self.discrete else "continuous"
        return (
            f"GAN(data_dim={self.data_dim}, latent_dim={self.latent_dim}, {kind}, "
            f"n_classes={self.n_classes})"
        )


class AdversarialLoss:
    """The GAN game as a :func:`~pyrobn.infer.fit_svi` loss that makes its own updates.

    ``update(model, guide, optim, x, y, batch_size)`` (one step): generate a minibatch as
    :meth:`GAN.model` does, update the discriminator on L_D (real rows against the
    detached generated ones), then the generator on L_G against the updated
    discriminator; returns L_D + L_G before the step's updates. Each log q(y | x) is the
    log-probability under the distribution of the observed site of
    :meth:`GAN.discriminator` (:meth:`GAN.critic_distribution`).
    """

    def __init__(self, gan: GAN) -> None:
        self.gan = gan
        self.d_losses: list[float] = []
        self.g_losses: list[float] = []

    def _players(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return list(self.gan.generator.parameters()), list(self.gan.critic.parameters())

    def _batch(self, model: Any, x: torch.Tensor, y: torch.Tensor | None, batch_size: int | None):
        """One step's (real rows on the game's scale, generated rows, one-hot labels).

        The generated rows are those of :meth:`GAN.model` with the same random draws
        (minibatch by ``randperm``, then z ~ N(0, I) by ``normal_``): the generator is run
        directly, without tracing the program (the trace cost ~0.7 ms of a ~5 ms step of
        the benchmark's networks; ``tests/test_gan.py`` checks the two agree). ``model``
        is the program whose parameters the step trains.
        """
        gan = self.gan
        generator = gan._registered("generator")
        dtype = gan.dtype
        n = x.shape[0]
        if batch_size is None or batch_size >= n:
            idx = torch.arange(n, device=x.device)
        else:
            idx = torch.randperm(n, device=x.device)[:batch_size]
        z = torch.empty(idx.shape[0], gan.latent_dim, dtype=dtype, device=x.device).normal_()
        c = gan._one_hot(None if y is None else y[idx], dtype)
        fake = generator(gan._join(z, c))
        u = (
            torch.rand(idx.shape[0], gan.data_dim, dtype=dtype, device=x.device)
            if gan.discrete
            else None
        )
        return gan.to_game_scale(x[idx], u), fake, c

    def _log_q(self, x: torch.Tensor, label: float, c: torch.Tensor | None) -> torch.Tensor:
        """(1/B) Σ log q(y = label | x_i) under :meth:`GAN.critic_distribution` (the
        distribution of the discriminator program's observed site)."""
        q = self.gan.critic_distribution(x, c)
        return q.log_prob(torch.full_like(q.logits, label)).mean()

    def _critic_loss(self, real: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None):
        """L_D with one pass of the discriminator over the real and the generated rows."""
        both = torch.cat([real, fake])
        labels = None if c is None else torch.cat([c, c])
        log_q = self.gan.critic_distribution(both, labels).log_prob(
            torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(both)
        )
        n = len(real)
        return -(log_q[:n].mean() + log_q[n:].mean())

    def loss(
        self, model: Any, guide: Any, x: torch.Tensor, y: Any = None, batch_size: Any = None
    ) -> float:
        """L_D + L_G at the current parameters (no update)."""
        with torch.no_grad():
            real, fake, c = self._batch(model, x, y, batch_size)
            self.gan._registered("critic")
            d = self._critic_loss(real, fake, c)
            g = -self._log_q(fake, 1.0, c)
        return float(d + g)

    def update(
        self,
        model: Any,
        guide: Any,
        optim: Any,
        x: torch.Tensor,
        y: Any = None,
        batch_size: Any = None,
    ) -> float:
        """One step of the game: the discriminator's update, then the generator's."""
        g_params, d_params = self._players()
        real, fake, c = self._batch(model, x, y, batch_size)
        self.gan._registered("critic")  # the loop snapshots and checkpoints what it sees
        d_loss = self._critic_loss(real, fake.detach(), c)
        d_loss.backward(inputs=d_params)
        optim(d_params)
        for p in d_params:
            p.grad = None
        g_loss = -self._log_q(fake, 1.0, c)
        g_loss.backward(inputs=g_params)
        optim(g_params)
        for p in g_params:
            p.grad = None
        d_value, g_value = float(d_loss.detach()), float(g_loss.detach())
        self.d_losses.append(d_value)
        self.g_losses.append(g_value)
        return d_value + g_value
