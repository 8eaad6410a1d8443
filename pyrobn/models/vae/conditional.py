"""The conditional VAE of notes 2.2.3 (eq. 19): p(z) pθ(x | z, y), qφ(z | x, y).

Any Bayesian network becomes a conditional one by adding the condition y to every
factor, p(x_1, ..., x_N | y) = Π_n p(x_n | Pa(x_n), y) (eq. 19); a neural factor takes y
as an extra input ("concatenar el valor de y"). Here y is a class label, given to both
networks as a one-hot vector.

Two options against a decoder that leans on z rather than y (the encoder sees x, which
shows the class, so z can carry it; a draw z ~ p(z) then need not match the y asked for):

- ``condition_every_layer=True``: y also enters every later layer of both networks, as a
  learned projection V_k y added to the pre-activation (:class:`pyrobn.nn.ConditionedMLP`;
  the conditional PixelCNN's scheme). Still eq. 19, with another network for each factor.
- ``sample(..., temperature=τ)``: z ~ N(0, τ² I). τ < 1 draws from the centre of the
  prior, where the decoder is most sure of the class; the draws then follow not pθ(x | y)
  but p_τ(x | y) = ∫ N(z; 0, τ² I) pθ(x | z, y) dz.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pyro.infer import ELBO
from pyro.optim import PyroOptim

from pyrobn.errors import ConfigurationError, OutOfSupportError, ShapeError
from pyrobn.graph import ModelGraph
from pyrobn.models.vae.latent_model import GaussianLatentModel
from pyrobn.validation import (
    check_allocation,
    check_int,
    check_integers_in_range,
    check_shape,
    to_real_tensor,
)

__all__ = ["ConditionalVAE"]


def _check_temperature(temperature: Any) -> float:
    """τ as a float: a real, finite number >= 0 (not a bool), else ConfigurationError."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ConfigurationError(f"temperature must be a real number >= 0, got {temperature!r}")
    value = float(temperature)
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"temperature must be finite and >= 0, got {temperature!r}")
    return value


def _is_boolean(y: Any) -> bool:
    """Whether y is a bool, or an array, tensor or (nested) list of bools."""
    if isinstance(y, bool):
        return True
    if isinstance(y, list | tuple):
        try:
            return np.asarray(y).dtype == np.bool_
        except (ValueError, TypeError):
            return False  # ragged: to_real_tensor names it
    return str(getattr(y, "dtype", "")) in ("bool", "torch.bool")


class ConditionalVAE(GaussianLatentModel):
    """Conditional VAE (notes 2.2.3, eq. 19): p(z) pθ(x | z, y), qφ(z | x, y).

    The label y enters both networks as a one-hot vector concatenated to their input
    (the notes' "concatenar el valor de y"). ``sample(n, y=c)`` generates class c.
    Likelihoods as in :class:`pyrobn.VAE` (``levels=`` for the categorical).

    ``condition_every_layer=True`` also adds a learned projection of y to every later
    layer of the encoder and the decoder (:class:`pyrobn.nn.ConditionedMLP`); the default
    False is the network of the notes, input concatenation only (and the one of files
    saved before the option existed).

    >>> cvae = pyrobn.ConditionalVAE(16, n_classes=3, latent_dim=2, hidden=(8,))
    >>> x, y = torch.rand(12, 16).round(), torch.arange(12) % 3
    >>> cvae.fit(x, y, steps=2, seed=0, progress=False).fit_result_.n_iter
    2
    >>> cvae.sample(4, y=2, seed=0).shape
    torch.Size([4, 16])
    """

    def __init__(
        self,
        data_dim: int,
        n_classes: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        activation: str = "relu",
        obs_scale: float | None = None,
        levels: int | None = None,
        condition_every_layer: bool = False,
    ) -> None:
        if not isinstance(condition_every_layer, bool):
            raise ConfigurationError(
                f"condition_every_layer must be True or False, got {condition_every_layer!r}"
            )
        extra = {"condition_every_layer": True} if condition_every_layer else {}
        super().__init__(
            data_dim=data_dim,
            n_classes=n_classes,
            latent_dim=latent_dim,
            hidden=list(hidden) if isinstance(hidden, Sequence) else hidden,
            likelihood=likelihood,
            activation=activation,
            obs_scale=obs_scale,
            levels=levels,
            **extra,  # absent when False: such files load in versions without the option
        )
        self.condition_every_layer = condition_every_layer
        self._init_vae(
            data_dim,
            latent_dim,
            hidden,
            likelihood,
            activation,
            check_int(n_classes, "n_classes", 2),
            obs_scale,
            levels,
            condition_every_layer,
        )

    def graph(self, inference: bool = False) -> ModelGraph:
        """Figura 9 with the condition of eq. 19: z -> x <- y (θ), or x -> z <- y (φ).

        In the generative network y and z are independent, and dependent given x (a
        collider): the latent z codes what the label does not say.

        >>> g = pyrobn.ConditionalVAE(4, n_classes=2, hidden=(8,)).graph()
        >>> g.d_separated("y", "z"), g.d_separated("y", "z", given=["x"])
        (True, False)
        """
        if inference:
            return self._graph(True, "CVAE inference q_φ(z | x, y)")
        return self._graph(False, "CVAE p(z) p_θ(x | z, y)")

    def _check_y(self, y: Any, n: int | None = None, name: str = "y") -> torch.Tensor:
        """Labels as a long tensor of shape (n,) in {0, ..., n_classes - 1}; an int is
        repeated n times."""
        if y is None:
            raise ConfigurationError(
                f"the conditional VAE is class-conditional (n_classes={self.n_classes}): "
                f"pass {name}, a label or one label per row"
            )
        if _is_boolean(y):
            raise ConfigurationError(f"{name} must hold integer labels, got booleans")
        if isinstance(y, numbers.Integral):
            if not 0 <= int(y) < self.n_classes:
                raise OutOfSupportError(
                    f"{name} = {int(y)} is not a class in {{0, ..., {self.n_classes - 1}}}"
                )
            count = 1 if n is None else n
            check_allocation(count, torch.int64, f"{count} labels")
            y = torch.full((count,), int(y), dtype=torch.long)
        y = to_real_tensor(y, name, dtype=None, device=self.device)
        check_shape(y, (n,), name)
        return check_integers_in_range(y, 0, self.n_classes, name).long()

    def _condition(self, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._check_x(x, matrix=True)
        y = self._check_y(y, x.shape[0])
        return x, self._one_hot(y, x.dtype)

    def model(
        self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None
    ) -> torch.Tensor:
        """z_i ~ N(0, I), x_i ~ pθ(x | z_i, y_i)."""
        return self._model(x, y, batch_size)

    def guide(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> None:
        """z_i ~ qφ(z | x_i, y_i)."""
        self._guide(x, y, batch_size)

    def fit(
        self,
        x: Any,
        y: Any,
        *,
        steps: int = 2000,
        batch_size: int | None = 128,
        lr: float = 1e-3,
        loss: str | ELBO = "trace",
        jit: bool | None = None,
        num_particles: int = 1,
        optim: PyroOptim | None = None,
        **kwargs: Any,
    ) -> ConditionalVAE:
        """As :meth:`pyrobn.VAE.fit`, with the labels y (ints in {0, ..., n_classes - 1});
        returns the model, the record in ``fit_result_``."""
        x = self._check_x(x, matrix=True)
        y = self._check_y(y, x.shape[0])
        return self._fit(
            self.model,
            self.guide,
            (x, y),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            loss=loss,
            jit=jit,
            num_particles=num_particles,
            optim=optim,
            **kwargs,
        )

    def encode(self, x: Any, y: Any, *, sample: bool = False, seed: int | None = None):
        """μφ(x, y), the posterior mean, or a draw of qφ(z | x, y) with ``sample=True``;
        shape (n, L)."""
        x, c = self._condition(x, y)
        return self._encode(x, c, bool(sample), seed)

    def decode(
        self, z: Any, y: Any, *, sample: bool = False, seed: int | None = None
    ) -> torch.Tensor:
        """E[x | z, y], or a draw with ``sample=True``; z of shape (n, L), y an int or n
        labels."""
        z = self._check_z(z)
        if z.dim() != 2:
            raise ShapeError(f"z must have shape (n, {self.latent_dim}), got {tuple(z.shape)}")
        c = self._one_hot(self._check_y(y, z.shape[0]), z.dtype)
        return self._decode(z, c, bool(sample), seed)

    def reconstruct(self, x: Any, y: Any) -> torch.Tensor:
        """decode(encode(x, y), y)."""
        return self.decode(self.encode(x, y), y)

    def sample(
        self,
        n: int,
        y: Any = None,
        *,
        seed: int | None = None,
        mean: bool = False,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """z ~ N(0, I), x ~ pθ(x | z, y): n samples of class y (an int, or n labels);
        shape (n, D). ``y`` is required (None raises :class:`ConfigurationError`); its
        default exists for the harness protocol's ``sample(n, *, y=None, seed=None)``.

        ``temperature=τ`` (>= 0) draws z = τ ε, ε ~ N(0, I), i.e. z ~ N(0, τ² I): for
        τ != 1 the samples **do not follow the model's pθ(x | y)** but
        ∫ N(z; 0, τ² I) pθ(x | z, y) dz, a sampling heuristic (τ < 1: less variety,
        clearer classes) as the autoregressive model's ``guidance``; τ = 0 decodes z = 0.
        One seed gives one ε for every τ. ``mean=True`` returns E[x | z, y] instead of a
        draw of x.

        >>> cvae = pyrobn.ConditionalVAE(4, n_classes=2, hidden=(8,))
        >>> bool((cvae.sample(3, y=1, mean=True, temperature=0)
        ...       == cvae.decode(torch.zeros(3, 2), 1)).all())
        True
        """
        check_int(n, "n")
        c = self._one_hot(self._check_y(y, n), self.dtype)
        return self._sample(c, n, seed, bool(mean), _check_temperature(temperature))

    def elbo(
        self, x: Any, y: Any, *, num_samples: int = 1, seed: int | None = None
    ) -> torch.Tensor:
        """Per-row ELBO of log pθ(x | y); shape (n,)."""
        x, c = self._condition(x, y)
        return self._evaluate(x, c, num_samples, seed, "mean")

    def log_likelihood(
        self,
        x: Any,
        y: Any,
        *,
        num_samples: int = 1000,
        seed: int | None = None,
        proposal: str = "posterior",
    ) -> torch.Tensor:
        """Importance-weighted estimate of log pθ(x | y) (as :meth:`pyrobn.VAE.log_likelihood`);
        shape (n,)."""
        x, c = self._condition(x, y)
        return self._evaluate(x, c, num_samples, seed, "logsumexp", proposal)

    def nll(
        self, x: Any, y: Any = None, *, seed: int | None = None, num_samples: int | None = None
    ) -> torch.Tensor:
        """-log p̂(x | y) per row in nats, shape (n,): minus :meth:`log_likelihood` (the
        harness protocol, ``nll_kind = "bound"``; see :meth:`pyrobn.VAE.nll`).

        An **upper bound on -log pθ(x | y) in expectation** (Jensen), tightening as the
        K = ``num_samples`` importance draws from qφ(z | x, y) grow; K defaults to
        ``self.nll_samples`` (1000). ``y`` (one label, or one per row) is required.

        >>> cvae = pyrobn.ConditionalVAE(4, n_classes=2, hidden=(8,))
        >>> cvae.nll(torch.ones(3, 4), 1, seed=0, num_samples=10).shape
        torch.Size([3])
        """
        k = self._nll_num_samples(num_samples)
        return -self.log_likelihood(x, y, num_samples=k, seed=seed)
