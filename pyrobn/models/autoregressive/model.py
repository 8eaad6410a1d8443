"""The autoregressive model of notes 2.2.2.1 as a Pyro model: eq. 15 with a neural conditioner.

    p(x) = p(x_1) Π_{t=1}^{D-1} p(x_{t+1} | x_1, ..., x_t)                      (eq. 15)

in a chosen order of the D variables. The Bayesian network (Figura 8) is the complete
DAG over x_1..x_D in that order: no independence is assumed, and every conditional
p(x_{t+1} | x_≤t) is given by one network whose output t sees inputs before t only
(:mod:`pyrobn.nn`: MADE masked MLP, dilated causal 1-D convolutions, a PixelCNN of
masked 2-D convolutions, or a small causal transformer). A label y conditions every
factor (eq. 19): p(x | y) = Π_t p(x_t | x_<t, y), entering every layer of the network.

**Classifier-free guidance** (optional; :mod:`pyrobn.models.neural`, as the diffusion
model): with ``p_uncond > 0`` training replaces each label by a "no label" class ∅ with
that probability, so that one network also gives p(x_t | x_<t, ∅), and sampling with
``guidance=w`` draws each x_t, in order, from the levels' logits

    ℓ_t = (1 + w) log p(x_t | x_<t, y) - w log p(x_t | x_<t, ∅).

w = 0 is ancestral sampling of p(x | y); w > 0 sharpens the class, and the draws no
longer follow p(x | y) (nor any distribution the model's likelihood measures):
:meth:`~AutoregressiveModel.log_prob` and :meth:`~AutoregressiveModel.nll` stay the
exact log p(x | y) with the real label.

As a Pyro model there is one observed site ``"x"`` whose log-probability is the exact
log-likelihood, and the guide is empty. With no latent variable the ELBO is
E_q[log p(x, z) - log q(z)] = log p(x): the SVI loss that :func:`pyrobn.infer.fit_svi`
minimises is exactly the negative log-likelihood of the minibatch, scaled to the data
set by the subsampled ``"data"`` plate (tested).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer import Trace_ELBO
from pyro.nn.module import to_pyro_module_

from pyrobn.device import to_tensor
from pyrobn.errors import ConfigurationError, OutOfSupportError, ShapeError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.infer.early_stopping import fit_svi_validated
from pyrobn.infer.optim import FusedAdam
from pyrobn.infer.result import FitResult
from pyrobn.models.autoregressive.conditionals import (
    Conditional,
    make_conditional,
)
from pyrobn.models.base import PyrobnModule
from pyrobn.models.neural import (
    check_guidance,
    check_p_uncond,
    class_context,
    guided,
    minibatch_schedule,
    standardize_once,
)
from pyrobn.nn import MADE, CausalConvNet, CausalTransformer, PixelCNN
from pyrobn.random import generator
from pyrobn.validation import (
    check_finite,
    check_int,
    check_integers_in_range,
    check_labels,
    check_positive,
)

#: the conditioner networks, by name
NETWORKS = ("made", "conv", "pixelcnn", "transformer")
# rows x positions x parameters kept under this many numbers per evaluation chunk
_EVAL_BUDGET = 2**23


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a float > 0, else :class:`ConfigurationError`."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ConfigurationError(f"temperature must be a positive number, got {temperature!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ConfigurationError(f"temperature must be positive and finite, got {temperature}")
    return float(temperature)


def build_network(
    network: str,
    length: int,
    in_features: int,
    out_features: int,
    *,
    hidden: int,
    layers: int,
    kernel_size: int,
    heads: int,
    dropout: float,
    activation: str,
    context_dim: int,
    image_shape: tuple[int, int] | None,
) -> torch.nn.Module:
    """The causal conditioner named ``network`` (a plain ``torch.nn`` module)."""
    if network == "made":
        return MADE(
            length, in_features, (hidden,) * layers, out_features,
            context_dim=context_dim, activation=activation, dropout=dropout,
        )  # fmt: skip
    if network == "conv":
        return CausalConvNet(
            in_features, hidden, out_features, layers=layers, kernel_size=kernel_size,
            context_dim=context_dim, activation=activation, dropout=dropout,
        )  # fmt: skip
    if network == "pixelcnn":
        if image_shape is None:
            raise ConfigurationError("network='pixelcnn' needs image_shape=(H, W)")
        return PixelCNN(
            image_shape, in_features, hidden, out_features, layers=layers,
            kernel_size=kernel_size, context_dim=context_dim, activation=activation,
            dropout=dropout,
        )  # fmt: skip
    if network == "transformer":
        return CausalTransformer(
            in_features, out_features, d_model=hidden, heads=heads, layers=layers,
            max_length=length, context_dim=context_dim, dropout=dropout,
        )  # fmt: skip
    raise ConfigurationError(f"unknown network {network!r}; choose one of {list(NETWORKS)}")


class AutoregressiveDistribution(dist.TorchDistribution):
    """p(x | y) = Π_t p(x_t | x_<t, y) of an :class:`AutoregressiveModel`, over D variables.

    ``log_prob`` runs the network once on the value (teacher forcing: every conditional
    in one pass); ``sample`` draws ancestrally, one variable after the other, from the
    global RNG (as Pyro's samplers do; :meth:`AutoregressiveModel.sample` uses a local
    generator instead).
    """

    arg_constraints: dict[str, Any] = {}  # noqa: RUF012 - torch's class attribute
    has_rsample = False

    def __init__(
        self,
        owner: AutoregressiveModel,
        context: torch.Tensor | None = None,
        batch_shape: torch.Size | tuple[int, ...] = (),
        temperature: float = 1.0,
        observed: torch.Tensor | None = None,
    ) -> None:
        self.owner = owner
        self.context = context
        self.temperature = temperature
        # log p(observed) computed when the distribution is built, inside the model, so
        # that Pyro sees the network's parameters in the model's trace (and trains them)
        self._cached = (
            (observed, owner._log_prob(observed, context)) if observed is not None else None
        )
        if context is not None:
            batch_shape = context.shape[:-1]
        super().__init__(torch.Size(batch_shape), torch.Size([owner.data_dim]), validate_args=False)

    @property
    def support(self) -> Any:
        cond = self.owner.conditional
        if cond.discrete:
            return constraints.independent(constraints.integer_interval(0, cond.levels - 1), 1)
        return constraints.independent(constraints.real, 1)

    def expand(self, batch_shape: torch.Size, _instance: Any = None) -> AutoregressiveDistribution:
        if torch.Size(batch_shape) == self.batch_shape:
            return self  # keeps the log-probability computed in the model
        context = self.context
        if context is not None:
            context = context.expand(*batch_shape, context.shape[-1])
        return AutoregressiveDistribution(self.owner, context, batch_shape, self.temperature)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._cached is not None and value is self._cached[0]:
            return self._cached[1]
        return self.owner._log_prob(value, self.context)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        n = math.prod(shape)
        context = self.context
        if context is not None:
            context = context.expand(*shape, context.shape[-1]).reshape(n, -1)
        x = self.owner._ancestral(n, context, self.temperature, None)
        return x.reshape(*shape, self.owner.data_dim)


class AutoregressiveModel(PyrobnModule):
    """p(x) = Π_t p(x_t | x_<t) over D variables in a chosen order (notes eq. 15, Figura 8).

    Args:
        data_dim: D, the number of variables (64 for the 8x8 digits).
        likelihood: the family of each conditional (:mod:`.conditionals`):
            ``"categorical"`` (``levels`` values), ``"discretized_logistic"`` (a mixture
            of ``components`` logistics binned on the levels), ``"bernoulli"``,
            ``"normal"`` or ``"logistic_mixture"`` (continuous, on values standardised
            by the training data's mean and sd; the density is reported for the
            original values).
        levels: the number of values of a discrete variable (17 for the book's digits).
        network: the conditioner: ``"made"`` (masked MLP, ``layers`` x ``hidden`` units),
            ``"conv"`` (dilated causal 1-D convolutions, ``hidden`` channels),
            ``"pixelcnn"`` (masked 2-D convolutions over ``image_shape``, raster order
            only) or ``"transformer"`` (``layers`` blocks of width ``hidden``, ``heads``).
        dropout: dropout between hidden layers during training.
        order: a permutation of 0..D-1: the variables' order in eq. 15 (default 0..D-1).
        image_shape: (H, W) for ``"pixelcnn"`` (default the square shape when D is one).
        n_classes: > 0 makes the model class-conditional, p(x | y) (eq. 19): y is fed to
            every conditional as a one-hot context (into every layer of the network).
        p_uncond: > 0 (class-conditional models): training drops each label to the "no
            label" class ∅ with this probability (classifier-free guidance; the context
            gains a slot for ∅). 0, the default, trains p(x | y) alone.
        guidance: the default guidance weight w >= 0 of :meth:`sample` (needs
            ``p_uncond > 0`` and a discrete likelihood). w > 0 samples from the guided
            logits of the module docstring, no longer from p(x | y).
        one_hot: feed the network one-hot inputs (nominal categories) instead of the
            ordinal value (grey levels).

    Example:
        >>> data = pyrobn.datasets.book_digits()
        >>> arm = pyrobn.AutoregressiveModel(64, "categorical", 17, network="pixelcnn", hidden=16)
        >>> arm = arm.fit(data.x_train[:100], epochs=1, x_val=data.x_val, seed=0, progress=False)
        >>> nll = arm.nll(data.x_test).mean()           # nats per image, exact
        >>> arm.sample(16, temperature=0.8, seed=0).shape   # integer pixels
        torch.Size([16, 64])
    """

    max_plate_nesting = 1

    def __init__(
        self,
        data_dim: int,
        likelihood: str = "categorical",
        levels: int | None = None,
        *,
        network: str = "made",
        hidden: int = 256,
        layers: int = 2,
        kernel_size: int = 3,
        heads: int = 4,
        dropout: float = 0.0,
        activation: str = "relu",
        components: int = 4,
        order: Sequence[int] | None = None,
        image_shape: Sequence[int] | None = None,
        n_classes: int = 0,
        one_hot: bool = False,
        p_uncond: float = 0.0,
        guidance: float = 0.0,
    ) -> None:
        data_dim = check_int(data_dim, "data_dim")
        n_classes = check_int(n_classes, "n_classes", low=0)
        p_uncond = check_p_uncond(p_uncond)
        if p_uncond and n_classes == 0:
            raise ConfigurationError(
                "p_uncond (label dropout) needs a class-conditional model (n_classes > 0)"
            )
        guidance = check_guidance(guidance, n_classes, p_uncond)
        if order is not None:
            order = [int(i) for i in order]
            if sorted(order) != list(range(data_dim)):
                raise ConfigurationError(
                    f"order must be a permutation of 0..{data_dim - 1}, got {order[:10]}"
                    f"{'...' if len(order) > 10 else ''} ({len(order)} entries)"
                )
        if image_shape is None and network == "pixelcnn":
            side = math.isqrt(data_dim)
            if side * side != data_dim:
                raise ConfigurationError(
                    f"network='pixelcnn' needs image_shape=(H, W) with H W = {data_dim}"
                )
            image_shape = (side, side)
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            if len(image_shape) != 2 or math.prod(image_shape) != data_dim:
                raise ConfigurationError(
                    f"image_shape must be (H, W) with H W = data_dim = {data_dim}, "
                    f"got {image_shape}"
                )
        if network == "pixelcnn" and order is not None and order != list(range(data_dim)):
            raise ConfigurationError(
                "network='pixelcnn' is causal in raster order only: leave order=None, or "
                "use 'made', 'conv' or 'transformer' for another order"
            )
        super().__init__(
            data_dim=data_dim, likelihood=likelihood, levels=levels, network=network,
            hidden=hidden, layers=layers, kernel_size=kernel_size, heads=heads,
            dropout=dropout, activation=activation, components=components,
            order=order, image_shape=list(image_shape) if image_shape else None,
            n_classes=n_classes, one_hot=one_hot, p_uncond=p_uncond, guidance=guidance,
        )  # fmt: skip
        self.data_dim = data_dim
        self.n_classes = n_classes
        self.p_uncond = p_uncond
        # the context's slot for ∅ ("no label"): only where label dropout trains it
        self.null_slot = p_uncond > 0
        self.network_name = network
        self.conditional: Conditional = make_conditional(
            likelihood, levels, components, one_hot=one_hot
        )
        net = build_network(
            network, data_dim, self.conditional.in_features, self.conditional.n_params,
            hidden=check_int(hidden, "hidden"), layers=check_int(layers, "layers"),
            kernel_size=kernel_size, heads=heads, dropout=dropout, activation=activation,
            context_dim=n_classes + int(self.null_slot), image_shape=image_shape,
        )  # fmt: skip
        self.net = to_pyro_module_(net) or net
        perm = torch.tensor(order if order is not None else range(data_dim), dtype=torch.long)
        self.register_buffer("order", perm)
        self.register_buffer("inverse_order", torch.argsort(perm))
        # continuous data are modelled standardised: x = shift + scale u (set by fit)
        self.register_buffer("shift", torch.zeros(data_dim))
        self.register_buffer("scale", torch.ones(data_dim))
        self.register_buffer("standardized", torch.zeros((), dtype=torch.bool))
        self.guidance = self._check_guidance(guidance)
        self.eval()

    # ------------------------------------------------------------------ checks
    @property
    def dtype(self) -> torch.dtype:
        return self.shift.dtype

    @property
    def nll_kind(self) -> str:
        """``"exact"``: :meth:`nll` is the exact negative log-likelihood (harness protocol)."""
        return "exact"

    def _check_x(self, x: Any, name: str = "x", mask: torch.Tensor | None = None) -> torch.Tensor:
        x = to_tensor(x, device_=self.device)
        if x.dim() != 2 or x.shape[-1] != self.data_dim:
            raise ShapeError(
                f"{name} must have shape (n, {self.data_dim}) (data_dim = {self.data_dim}), "
                f"got {tuple(x.shape)}"
            )
        if x.dtype == torch.bool or x.is_complex():
            raise OutOfSupportError(f"{name} must hold numbers, got dtype {x.dtype}")
        x = x.to(self.dtype)
        if mask is not None:
            x = torch.where(mask, x, torch.zeros_like(x))
        if self.conditional.discrete:
            check_integers_in_range(x, 0, self.conditional.levels, name)
        else:
            check_finite(x, name)
        return x

    def _labels(self, y: Any, n: int, name: str = "y") -> torch.Tensor | None:
        """``y`` as n long labels (None for an unconditional model), checked."""
        return check_labels(y, n, self.n_classes, name, device=self.device)

    def _context(self, y: Any, n: int, name: str = "y") -> torch.Tensor | None:
        """The one-hot context of the labels ``y`` (eq. 19), None if unconditional; never
        ∅ (the labels are checked to lie in 0..n_classes-1)."""
        labels = self._labels(y, n, name)
        return None if labels is None else self._one_hot(labels, self.dtype)

    def _one_hot(
        self, labels: torch.Tensor, dtype: torch.dtype, p_uncond: float = 0.0
    ) -> torch.Tensor:
        """One-hot labels, with the slot for ∅ if the model has one; ``p_uncond`` drops
        each label to ∅ with that probability."""
        return class_context(
            labels, self.n_classes, dtype, null_slot=self.null_slot, p_uncond=p_uncond
        )

    def _check_guidance(self, guidance: Any) -> float:
        """w >= 0; w > 0 needs label dropout (p_uncond > 0) and a discrete likelihood."""
        guidance = check_guidance(guidance, self.n_classes, self.p_uncond)
        if guidance and not self.conditional.discrete:
            raise ConfigurationError(
                "guidance combines the levels' logits: it needs a discrete likelihood, "
                f"not {self.conditional.name!r}"
            )
        return guidance

    # ------------------------------------------------------------------ core
    def _features(self, u: torch.Tensor) -> torch.Tensor:
        """Network input features of values ``u`` in order coordinates."""
        return self.conditional.encode(u)

    def _params(self, u: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """θ_t for every position (order coordinates): (B, D) -> (B, D, P)."""
        return self.net(self._features(u), context)

    def _to_model_space(self, x: torch.Tensor) -> torch.Tensor:
        """x in the variables' own indexing -> u in order coordinates (standardised)."""
        if not self.conditional.discrete:
            x = (x - self.shift) / self.scale
        return x[..., self.order]

    def _from_model_space(self, u: torch.Tensor) -> torch.Tensor:
        x = u[..., self.inverse_order]
        if not self.conditional.discrete:
            x = self.shift + self.scale * x
        return x

    def _log_prob(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """log p(x | c) per row: Σ_t log p(x_t | x_<t, c), with the standardising Jacobian."""
        batch = x.shape[:-1]
        u = self._to_model_space(x).reshape(-1, self.data_dim)
        c = (
            None
            if context is None
            else context.expand(*batch, context.shape[-1]).reshape(-1, context.shape[-1])
        )
        log_p = self.conditional.log_prob(self._params(u, c), u).sum(-1)
        if not self.conditional.discrete:
            log_p = log_p - self.scale.log().sum()
        return log_p.reshape(batch)

    def _prefix(self, t: int) -> int:
        """How many leading positions the network needs to give the output at t: t + 1
        for causal convolutions and the transformer, the rows up to t's for the PixelCNN
        (rows below never reach rows above), all D for MADE (fixed-size layers)."""
        if self.network_name in ("conv", "transformer"):
            return t + 1
        if self.network_name == "pixelcnn":
            width = self.net.image_shape[1]
            return (t // width + 1) * width
        return self.data_dim

    @torch.no_grad()
    def _ancestral(
        self,
        n: int,
        context: torch.Tensor | None,
        temperature: float,
        gen: torch.Generator | None,
        start: torch.Tensor | None = None,
        keep: torch.Tensor | None = None,
        guidance: float = 0.0,
    ) -> torch.Tensor:
        """Ancestral sampling (notes 2.1.2): x_t ~ p_T(x_t | x_<t) for t = 1..D in order.

        ``guidance`` w > 0 (discrete, with a context): x_t ~ softmax(ℓ_t / T) with the
        guided logits ℓ_t of :meth:`_level_logits` instead.

        ``start``/``keep`` (order coordinates, model space): rows keep their entries
        where ``keep`` is true (completion). Causal convolutions and the transformer
        run on the prefix x_≤t only (their outputs up to t do not depend on the rest):
        the D passes cost Σ_t t instead of D² positions; the PixelCNN on the rows up to
        t's (about half of D²); MADE on all D.
        """
        u = torch.zeros(n, self.data_dim, dtype=self.dtype, device=self.device)
        if start is not None:
            u = start.clone()
        for t in range(self.data_dim):
            if keep is not None and bool(keep[:, t].all()):
                continue
            view = u[:, : self._prefix(t)]
            if guidance and context is not None:
                logits = self._level_logits(view, context, t, guidance)
                draw = self.conditional.sample_logits(logits, temperature, gen)
            else:
                theta = self._params(view, context)[:, t]
                draw = self.conditional.sample(theta, temperature, gen)
            u[:, t] = draw if keep is None else torch.where(keep[:, t], u[:, t], draw)
        return self._from_model_space(u)

    def _level_logits(
        self, u: torch.Tensor, context: torch.Tensor, t: int, guidance: float
    ) -> torch.Tensor:
        """The guided logits of x_t over the levels (discrete likelihoods), (B, L):
        (1 + w) log p(x_t | u_<t, y) - w log p(x_t | u_<t, ∅)."""

        def level_log_probs(c: torch.Tensor) -> torch.Tensor:
            return self.conditional.level_log_probs(self._params(u, c)[:, t])

        return guided(level_log_probs, context, guidance)

    # ------------------------------------------------------------------ Pyro
    def model(
        self, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int | None = None
    ) -> torch.Tensor:
        """x_i ~ p(x | y_i) = Π_t p(x_it | x_i,<t, y_i) for a subsample of the rows (eq. 15).

        In training mode with ``p_uncond > 0`` each y_i is replaced by ∅ with that
        probability (label dropout): the objective is then that of p(x | y) and p(x | ∅)
        in proportion; in evaluation mode it is exactly log p(x | y)."""
        n = x.shape[0]
        with pyro.plate("data", n, subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            c = None
            if y is not None:
                yb = y if batch_size is None else y[idx]
                drop = self.p_uncond if self.training else 0.0
                c = self._one_hot(yb.long(), xb.dtype, drop)
            fn = AutoregressiveDistribution(self, c, (xb.shape[0],), observed=xb)
            return pyro.sample("x", fn, obs=xb)

    def guide(
        self, x: torch.Tensor, y: torch.Tensor | None = None, batch_size: int | None = None
    ) -> None:
        """Empty: no latent variable, so the ELBO is the exact log-likelihood."""

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = 64,
        lr: float = 1e-3,
        x_val: Any = None,
        y_val: Any = None,
        patience: int | None = None,
        eval_every: int = 1,
        seed: int | None = None,
        progress: bool = True,
        optim: Any = None,
        **svi_kwargs: Any,
    ) -> AutoregressiveModel:
        """Maximum likelihood by SVI with the empty guide (:func:`pyrobn.infer.fit_svi`).

        Give ``steps`` (SVI steps of ``batch_size`` random rows) or ``epochs`` (ceil(n /
        batch_size) steps each). With ``x_val`` the validation NLL is measured every
        ``eval_every`` epochs, training stops after ``patience`` evaluations without
        improvement (if given), and the parameters of the best evaluation are kept
        (early stopping, as the book's code does). Continuous data are standardised by
        the first fit's mean and sd. Returns ``self``; ``fit_result_`` holds the
        objective (the minibatch log-likelihood scaled to n rows, per step) and
        ``validation_nll_`` the validation curve in nats per row.
        """
        x = self._check_x(x)
        n = x.shape[0]
        y_t = self._labels(y, n)
        check_positive(lr, "lr")
        batch, per_epoch, total = minibatch_schedule(n, steps, epochs, batch_size)
        if not self.conditional.discrete:
            standardize_once(x, self.shift, self.scale, self.standardized)
        validation_nll, chunk = None, total
        if x_val is not None:
            xv = self._check_x(x_val, "x_val")
            yv = self._labels(y_val, xv.shape[0], "y_val")
            chunk = per_epoch * check_int(eval_every, "eval_every")

            def validation_nll() -> float:
                return float(self.nll(xv, yv).mean())

        elif patience is not None:
            raise ConfigurationError("patience= needs x_val= (early stopping on validation data)")
        optim = optim if optim is not None else FusedAdam(lr=lr)
        started = time.perf_counter()
        with self._fitting(seed):
            self.train()
            try:
                history, self.validation_nll_ = fit_svi_validated(
                    self, self.model, self.guide, x, y_t, None if batch >= n else batch,
                    optim=optim, steps=total, chunk=chunk, validation_nll=validation_nll,
                    patience=patience, loss=Trace_ELBO(), progress=progress,
                    description=type(self).__name__, **svi_kwargs,
                )  # fmt: skip
            finally:
                self.eval()
        result = FitResult.from_history(history, objective_name="log_likelihood")
        return self._set_result(result, started)

    # ------------------------------------------------------------------ queries
    def log_prob(self, x: Any, y: Any = None) -> torch.Tensor:
        """log p(x | y) per row, exact (eq. 15): shape (n,), nats (a density if continuous)."""
        x = self._check_x(x)
        context = self._context(y, x.shape[0])
        rows = max(1, _EVAL_BUDGET // (self.data_dim * max(self.conditional.n_params, 8)))
        parts = [
            self._log_prob(x[i : i + rows], None if context is None else context[i : i + rows])
            for i in range(0, x.shape[0], rows)
        ]
        return torch.cat(parts)

    def nll(self, x: Any, y: Any = None, *, seed: int | None = None) -> torch.Tensor:
        """-log p(x | y) per row in nats, exact (the harness protocol; ``seed`` unused)."""
        with torch.no_grad():
            return -self.log_prob(x, y)

    def sample(
        self,
        n: int,
        *,
        y: Any = None,
        temperature: float = 1.0,
        guidance: float | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """n draws by ancestral sampling at ``temperature`` (notes 2.2.2): shape (n, D).

        Each x_t is drawn from p(x_t | x_<t, y)^(1/T), normalised: T < 1 sharpens every
        conditional towards its mode, T > 1 flattens it. ``guidance`` w (default the
        model's ``guidance``; needs ``p_uncond > 0``) draws x_t from softmax(ℓ_t / T),
        ℓ_t = (1 + w) log p(x_t | x_<t, y) - w log p(x_t | x_<t, ∅) (classifier-free
        guidance): for w > 0 the draws no longer follow p(x | y); w = 0 gives the same
        draws as the unguided sampler. Draws come from a local generator seeded by
        ``seed``: the global RNG is never touched.
        """
        n = check_int(n, "n")
        temperature = check_temperature(temperature)
        guidance = self.guidance if guidance is None else self._check_guidance(guidance)
        context = self._context(y, n)
        return self._ancestral(
            n, context, temperature, generator(seed, self.device), guidance=guidance
        )

    def complete(
        self,
        x: Any,
        observed_mask: Any,
        *,
        y: Any = None,
        temperature: float = 1.0,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Fill the missing entries of each row by a draw from p(x_missing | x_observed, y).

        Exact where the order allows it: when, in every row, the observed variables come
        before the missing ones in the model's order (e.g. the top rows of an image in
        raster order), p(x_mis | x_obs) = Π_{t missing} p(x_t | x_<t) and ancestral
        sampling continues from the observed prefix. Any other pattern raises
        :class:`ConfigurationError` naming the row. Missing entries may hold anything
        (NaN included). No guidance: the draws follow the model.
        """
        temperature = check_temperature(temperature)
        mask = to_tensor(observed_mask, device_=self.device)
        if mask.dtype != torch.bool:
            raise ConfigurationError(f"observed_mask must be boolean, got dtype {mask.dtype}")
        x_raw = to_tensor(x, device_=self.device)
        if tuple(mask.shape) != tuple(x_raw.shape):
            raise ShapeError(
                f"observed_mask must have the shape of x {tuple(x_raw.shape)}, "
                f"got {tuple(mask.shape)}"
            )
        x = self._check_x(x_raw, mask=mask)
        keep = mask[:, self.order]
        bad = keep[:, 1:] & ~keep[:, :-1]
        if bad.any():
            row, pos = (int(i) for i in bad.nonzero()[0])
            raise ConfigurationError(
                f"row {row}: variable {int(self.order[pos + 1])} is observed but variable "
                f"{int(self.order[pos])}, earlier in the model's order, is missing; exact "
                "completion needs the observed variables to come first in the order"
            )
        context = self._context(y, x.shape[0])
        start = self._to_model_space(x)
        return self._ancestral(
            x.shape[0], context, temperature, generator(seed, self.device), start, keep
        )

    def graph(self, max_nodes: int = 5) -> ModelGraph:
        """Figura 8: the complete DAG x_t <- x_1..x_{t-1} over the first ``max_nodes``
        variables in the model's order (all D would draw D(D-1)/2 edges), with y -> x_t
        for a class-conditional model (eq. 19); a plate over the N data rows."""
        k = min(check_int(max_nodes, "max_nodes"), self.data_dim)
        names = [f"x{int(self.order[t]) + 1}" for t in range(k)]
        discrete = self.conditional.discrete
        nodes = [GraphNode(name, "observed", discrete) for name in names]
        edges = [(names[s], names[t]) for t in range(k) for s in range(t)]
        if self.n_classes:
            nodes.insert(0, GraphNode("y", "observed", True))
            edges += [("y", name) for name in names]
        title = f"autoregressive model (eq. 15): {k} of {self.data_dim} variables"
        return ModelGraph(nodes, edges, {"data": ([n.name for n in nodes], "N")}, title)


__all__ = [
    "NETWORKS",
    "AutoregressiveDistribution",
    "AutoregressiveModel",
    "build_network",
    "check_temperature",
]
