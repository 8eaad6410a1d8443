"""Naive Bayes (notes 2.1.3.2, eq. 10, Figura 3) as a Bayesian network and a Pyro model/guide.

The joint factorises as p(x, y) = p(y) prod_d p(x_d | y) (eq. 10): the class y is the
single parent of every feature x_d.  Each feature is Gaussian, Bernoulli or categorical
given the class.  Fitting is closed form: the maximum a posteriori estimate under
Dirichlet/Beta priors (``concentration`` c: MAP adds c - 1 pseudo-counts, scikit-learn's
add-alpha smoothing with alpha = c - 1), computed from sufficient statistics, so it
streams (``partial_fit``).  A missing label (y = -1) is a latent variable: the Pyro model
enumerates it, and ``fit`` maximises the marginal likelihood sum_y p(x, y) of the
unlabelled rows by EM (through :func:`pyrobn.infer.em.run_em`, closed-form M-steps) or by
SVI on the same model/guide pair.

>>> X = torch.tensor([[0.0, 1.0], [0.2, 1.0], [3.0, 0.0], [3.2, 0.0]], dtype=torch.float64)
>>> nb = NaiveBayes(["gaussian", "bernoulli"]).fit(X, torch.tensor([0, 0, 1, 1]))
>>> nb.predict(torch.tensor([[0.1, 1.0], [2.9, 0.0]], dtype=torch.float64)).tolist()
[0, 1]
>>> nb.graph().parents("x2"), nb.n_parameters      # Figura 3: y -> x_d
(('y',), 7)
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.infer import TraceEnum_ELBO
from pyro.optim import Adam

from pyrobn.device import device as default_device
from pyrobn.errors import (
    ConfigurationError,
    InvalidDistributionError,
    NonFiniteError,
    OutOfSupportError,
    ShapeError,
    ZeroProbabilityEvidence,
)
from pyrobn.infer.em import run_em
from pyrobn.infer.params import forget_params
from pyrobn.infer.result import FitResult
from pyrobn.infer.svi import History, fit_svi

# DataSizedBuffers lives in models/base.py; the name stays importable from here for
# markov.py until it imports the base copy.
from pyrobn.models.base import DataSizedBuffers, PyrobnModule
from pyrobn.random import generator
from pyrobn.validation import check_allocation, check_finite, check_int, check_shape, to_real_tensor

if TYPE_CHECKING:
    from pyrobn.graph import ModelGraph

__all__ = ["KINDS", "NaiveBayes"]

FeatureKind = Literal["gaussian", "bernoulli", "categorical"]
KINDS: tuple[str, ...] = ("gaussian", "bernoulli", "categorical")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_ = DataSizedBuffers  # re-exported (see above)


def _real_number(value: Any, name: str, *, low: float = 0.0, allow_none: bool = False) -> float:
    """``value`` as a finite real number >= ``low`` (bools, strings, complex refused)."""
    if value is None and allow_none:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < low:
        raise ConfigurationError(f"{name} must be finite and >= {low}, got {value}")
    return value


def _concentration(
    concentration: float | None, alpha: float | None, name: str, alias: str, default: float
) -> float:
    """The Dirichlet concentration c (MAP adds c - 1 pseudo-counts), from itself or from
    scikit-learn's add-alpha smoothing (c = alpha + 1); not both."""
    if concentration is not None and alpha is not None:
        raise ConfigurationError(f"give {name} or {alias} (= {name} - 1), not both")
    if alpha is not None:
        return _real_number(alpha, alias) + 1.0
    if concentration is None:
        return default
    return _real_number(concentration, name, low=1.0)


def first_bad(mask: torch.Tensor) -> tuple[int, ...]:
    """Index of the first True entry of ``mask`` (row-major)."""
    return tuple(int(i) for i in mask.nonzero()[0].tolist())


def check_finite_fast(x: torch.Tensor, name: str) -> torch.Tensor:
    """:func:`check_finite` behind a one-reduction test: a NaN or inf makes the sum non-finite."""
    if x.is_floating_point() and not bool(torch.isfinite(x.sum())):
        check_finite(x, name)  # names the first bad entry (passes if the sum merely overflowed)
    return x


def logsumexp_rows(a: torch.Tensor) -> torch.Tensor:
    """log sum_j exp(a_ij) over the last axis, stable (faster than torch's for few columns)."""
    top = a.max(-1, keepdim=True).values
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return (a - top).exp().sum(-1).log() + top.squeeze(-1)


def _blocks(n_rows: int, n_cols: int, elements: int = 2**21) -> list[slice]:
    """Row blocks of about ``elements`` entries (16 MB of float64): temporaries of this size
    are reused by the allocator, where a fresh N x D one is page-faulted in each time."""
    step = max(1024, elements // max(n_cols, 1))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


@dataclass
class _Stats:
    """Sufficient statistics of eq. 10 with (soft) class weights W_c = sum_n r_nc."""

    weight: torch.Tensor  # (C,)
    g_mean: torch.Tensor  # (C, Dg) weighted mean of the Gaussian features
    g_m2: torch.Tensor  # (C, Dg) weighted sum of squared deviations from g_mean
    b_ones: torch.Tensor  # (C, Db) weighted count of x_d = 1
    c_counts: torch.Tensor  # (C, Dc, V) weighted count of x_d = v

    def merge(self, other: _Stats) -> _Stats:
        """Pool two batches (Chan et al.'s update for mean and M2): exact streaming."""
        n = self.weight + other.weight
        safe = n.clamp_min(torch.finfo(n.dtype).tiny).unsqueeze(-1)
        delta = other.g_mean - self.g_mean
        wa, wb = self.weight.unsqueeze(-1), other.weight.unsqueeze(-1)
        return _Stats(
            weight=n,
            g_mean=self.g_mean + delta * wb / safe,
            g_m2=self.g_m2 + other.g_m2 + delta**2 * wa * wb / safe,
            b_ones=self.b_ones + other.b_ones,
            c_counts=self.c_counts + other.c_counts,
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"stat_{k}": v for k, v in self.__dict__.items()}


class NaiveBayes(DataSizedBuffers, PyrobnModule):
    """Naive Bayes classifier p(x, y) = p(y) prod_d p(x_d | y) (notes eq. 10, Figura 3).

    Args:
        features: ``"gaussian"``, ``"bernoulli"`` or ``"categorical"`` for every feature,
            or a list with one of these per feature (mixed data).
        alpha: scikit-learn's add-alpha smoothing, a documented alias of
            ``concentration = alpha + 1`` (kept so that scikit-learn code reads the same).
        concentration: c >= 1, the Beta(c, c) / Dirichlet(c) prior of the Bernoulli and
            categorical tables; MAP adds c - 1 pseudo-counts:
            p(x_d = v | y = k) = (N_kdv + c - 1) / (N_k + V_d (c - 1)). Default 2
            (alpha = 1, scikit-learn's default Laplace smoothing); 1 is flat (the MLE).
        class_concentration: the same for the class prior p(y): (N_k + c - 1) / (N + C (c - 1));
            default 1 (relative frequencies, scikit-learn's ``fit_prior=True``).
            ``class_alpha`` (= class_concentration - 1) is its deprecated old name.
        var_smoothing: epsilon = var_smoothing * max_d Var(x_d) is added to every Gaussian
            variance (scikit-learn's GaussianNB; 1e-9 by default, 0 for the plain MLE).
            When every Gaussian feature is constant, max_d Var(x_d) = 0 and scikit-learn's
            epsilon is 0, so its ``predict_proba`` is NaN; pyrobn then takes epsilon = 1
            (var_smoothing > 0), and as every class shares the constant, those features
            cancel in Bayes' rule: p(y | x) = p(y | the other features), the same for
            every positive variance. With ``var_smoothing=0`` a zero variance (a feature constant
            within a class) makes the Gaussian degenerate: ``fit`` raises
            :class:`ConfigurationError` naming the feature and the class.
        n_classes: number of classes (default: max label + 1 in the first fit).
        n_categories: categories per categorical feature (an int for all, or a list);
            default max value + 1 per feature in the first fit (scikit-learn's rule).
        binarize: if given, Bernoulli features are x_d > binarize (scikit-learn's
            ``binarize``); if None they must already be 0/1.
        dtype: ``"float64"`` (default) or ``"float32"``.

    Labels are integers 0..C-1; -1 marks a missing label, summed out in ``fit``.

    Example::

        nb = NaiveBayes("gaussian").fit(X, y)
        nb.predict_proba(X_test)          # p(y | x) by Bayes' rule, (N, C)
    """

    max_plate_nesting = 1

    def __init__(
        self,
        features: str | Sequence[str] = "gaussian",
        alpha: float | None = None,
        *,
        concentration: float | None = None,
        class_concentration: float | None = None,
        class_alpha: float | None = None,
        var_smoothing: float = 1e-9,
        n_classes: int | None = None,
        n_categories: int | Sequence[int] | None = None,
        binarize: float | None = None,
        dtype: str = "float64",
    ) -> None:
        if isinstance(features, str):
            features_cfg: str | list[str] = features
        elif isinstance(features, Sequence):
            features_cfg = list(features)
        else:
            raise ConfigurationError(
                f"features must be a kind or a list of kinds {KINDS}, got {features!r}"
            )
        kinds = [features_cfg] if isinstance(features_cfg, str) else features_cfg
        for i, kind in enumerate(kinds):
            if not isinstance(kind, str) or kind not in KINDS:
                where = "" if isinstance(features_cfg, str) else f" (feature {i})"
                raise ConfigurationError(
                    f"unknown feature kind {kind!r}{where}; use one of {KINDS}"
                )
        if not isinstance(features_cfg, str) and not features_cfg:
            raise ConfigurationError("features is an empty list")
        conc = _concentration(concentration, alpha, "concentration", "alpha", 2.0)
        if class_alpha is not None:
            warnings.warn(
                "class_alpha is deprecated: use class_concentration = class_alpha + 1 "
                "(the Dirichlet concentration; MAP adds concentration - 1 pseudo-counts)",
                DeprecationWarning,
                stacklevel=2,
            )
        class_conc = _concentration(
            class_concentration, class_alpha, "class_concentration", "class_alpha", 1.0
        )
        var_smoothing = _real_number(var_smoothing, "var_smoothing")
        if n_classes is not None:
            n_classes = check_int(n_classes, "n_classes")
        if n_categories is None or isinstance(n_categories, numbers.Integral):
            n_cat_cfg: int | list[int] | None = (
                None if n_categories is None else check_int(n_categories, "n_categories")
            )
        elif isinstance(n_categories, Sequence) and not isinstance(n_categories, str):
            n_cat_cfg = [check_int(v, f"n_categories[{i}]") for i, v in enumerate(n_categories)]
        else:
            raise ConfigurationError(
                f"n_categories must be an int or a list of ints, got {n_categories!r}"
            )
        if binarize is not None:
            binarize = _real_number(binarize, "binarize", low=-math.inf)
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ConfigurationError(f"dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        super().__init__(
            features=features_cfg,
            concentration=conc,
            class_concentration=class_conc,
            var_smoothing=var_smoothing,
            n_classes=n_classes,
            n_categories=n_cat_cfg,
            binarize=binarize,
            dtype=dtype,
        )
        self.dtype = _DTYPES[dtype]
        self.concentration = conc
        self.class_concentration = class_conc
        self.alpha = conc - 1.0  # the pseudo-counts MAP adds (scikit-learn's alpha)
        self.class_alpha = class_conc - 1.0
        self.var_smoothing = var_smoothing
        self.binarize = binarize
        self.stats_valid = True
        empty = torch.empty(0, dtype=self.dtype, device=default_device())
        for name in (
            # fitted parameters
            "log_class_prior", "g_mean", "g_var", "b_log_p", "b_log_1mp", "c_log_prob",
            # sufficient statistics (partial_fit)
            "stat_weight", "stat_g_mean", "stat_g_m2", "stat_b_ones", "stat_c_counts",
            # bookkeeping: overall mean of the Gaussian features, epsilon
            "g_shift", "epsilon",
        ):  # fmt: skip
            self.register_buffer(name, empty.clone())
        for name in ("g_idx", "b_idx", "c_idx", "n_cat"):
            self.register_buffer(name, empty.clone().long())

    # ------------------------------------------------------------------ state
    @property
    def fitted(self) -> bool:
        return self.log_class_prior.numel() > 0

    @property
    def n_classes(self) -> int:
        """C, the number of classes (0 before fit)."""
        return self.log_class_prior.numel()

    @property
    def n_features(self) -> int:
        return self.g_idx.numel() + self.b_idx.numel() + self.c_idx.numel()

    @property
    def kinds(self) -> list[str]:
        """The kind of each feature, in column order."""
        kinds = [""] * self.n_features
        for kind, idx in zip(KINDS, (self.g_idx, self.b_idx, self.c_idx)):
            for i in idx.tolist():
                kinds[i] = kind
        return kinds

    def get_extra_state(self) -> dict[str, Any]:
        return {"stats_valid": self.stats_valid}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("stats_valid"), bool):
            raise ConfigurationError("the saved extra state must hold a bool 'stats_valid'")
        self.stats_valid = state["stats_valid"]

    @property
    def em_history(self) -> list[float]:
        """Deprecated: the objective per EM iteration is ``fit_result_.objective``."""
        warnings.warn(
            "NaiveBayes.em_history is deprecated: use fit_result_.objective",
            DeprecationWarning,
            stacklevel=2,
        )
        r = self.fit_result_
        return list(r.objective) if r is not None and r.method == "em" else []

    @property
    def svi_history(self) -> History | None:
        """Deprecated: the SVI record is ``fit_result_.history``."""
        warnings.warn(
            "NaiveBayes.svi_history is deprecated: use fit_result_ (its history for SVI)",
            DeprecationWarning,
            stacklevel=2,
        )
        return None if self.fit_result_ is None else self.fit_result_.history

    def _check_state(self) -> None:
        """After a load: finite tables of consistent shapes, rows that are distributions."""
        for name, tensor in self.named_buffers():
            if tensor.is_floating_point() and bool(torch.isnan(tensor).any()):
                raise NonFiniteError(f"buffer {name!r} holds NaN")
        if not self.fitted:
            return
        C = self.n_classes
        Dg, Db, Dc = self.g_idx.numel(), self.b_idx.numel(), self.c_idx.numel()
        shapes = {
            "g_mean": (C, Dg),
            "g_var": (C, Dg),
            "b_log_p": (C, Db),
            "b_log_1mp": (C, Db),
            "n_cat": (Dc,),
        }
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ShapeError(
                    f"{name} has shape {tuple(getattr(self, name).shape)}, not {shape}"
                )
        if Dg and not bool((self.g_var > 0).all() and torch.isfinite(self.g_var).all()):
            raise InvalidDistributionError("a Gaussian variance is not positive and finite")
        total = torch.logsumexp(self.log_class_prior, 0)
        if abs(float(total)) > 1e-6:
            raise InvalidDistributionError(f"the class prior sums to {float(total.exp())}, not 1")
        if Dc:
            sums = torch.logsumexp(self.c_log_prob, -1)
            if bool(((sums.abs() > 1e-6) & torch.isfinite(sums)).any()):
                raise InvalidDistributionError("a categorical table row does not sum to 1")

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ConfigurationError("this NaiveBayes is not fitted yet: call fit(X, y) first")

    # ------------------------------------------------------------- validation
    def _as_matrix(self, X: Any, *, first: bool = False) -> torch.Tensor:
        """X as a finite (N, D) tensor of the model's dtype on the model's device."""
        if first and isinstance(X, torch.Tensor):
            target = X.device
        else:
            target = self.device if self.fitted else default_device()
        X_t = to_real_tensor(X, "X", dtype=self.dtype, device=target)
        if X_t.dim() != 2:
            raise ShapeError(f"X must be a (N, D) matrix, got shape {tuple(X_t.shape)}")
        if X_t.shape[0] == 0:
            raise ShapeError("X has no rows")
        if not first:
            check_shape(X_t, (None, self.n_features), "X")
        return check_finite_fast(X_t, "X")

    def _as_labels(
        self, y: Any, n: int, device: torch.device, *, allow_missing: bool
    ) -> torch.Tensor:
        if isinstance(y, torch.Tensor):
            if y.is_complex():
                raise ConfigurationError(f"y must hold integer labels, got a {y.dtype} tensor")
            y_t = y.to(device)
        else:
            array = np.asarray(y) if not isinstance(y, str | bytes) else np.asarray([y])
            if array.dtype.kind not in "biuf":
                raise ConfigurationError(
                    f"y must hold integer labels, got an array of {array.dtype}"
                )
            y_t = torch.as_tensor(array, device=device)
        if y_t.dtype == torch.bool:
            y_t = y_t.long()
        check_shape(y_t, (n,), "y (one label per row of X)")
        low = -1 if allow_missing else 0
        bad = y_t < low
        if y_t.is_floating_point():
            bad |= ~torch.isfinite(y_t) | (y_t != y_t.round())
        if bool(bad.any()):
            i = first_bad(bad)[0]
            what = "an integer label >= 0 or -1 (missing)" if allow_missing else "a label >= 0"
            raise OutOfSupportError(f"y[{i}] = {y_t[i].item()} is not {what}")
        return y_t.long()

    def _prepare(self, X_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split X into its Gaussian, Bernoulli and categorical columns, checking supports."""
        Xg = X_t if self.g_idx.numel() == X_t.shape[1] else X_t[:, self.g_idx]
        Xb = X_t[:, self.b_idx] if self.b_idx.numel() < X_t.shape[1] else X_t
        if self.binarize is not None:
            Xb = (Xb > self.binarize).to(X_t.dtype)
        elif Xb.numel():
            bad = (Xb != 0) & (Xb != 1)
            if bool(bad.any()):
                row, col = first_bad(bad)
                raise OutOfSupportError(
                    f"Bernoulli feature {int(self.b_idx[col])} must be 0 or 1 (or set "
                    f"binarize=...); row {row} holds {float(Xb[row, col])}"
                )
        Xc = X_t[:, self.c_idx] if self.c_idx.numel() < X_t.shape[1] else X_t
        if Xc.numel():
            Xc = self._check_categorical(Xc, self.n_cat)
        return Xg, Xb, Xc

    def _check_categorical(self, Xc: torch.Tensor, n_cat: torch.Tensor | None) -> torch.Tensor:
        """Categorical columns as integers in {0, ..., V_d - 1} (any integer >= 0 if None)."""
        bad = (Xc < 0) | (Xc != Xc.round())
        if n_cat is not None:
            bad |= Xc >= n_cat.to(Xc.dtype)
        if bool(bad.any()):
            row, col = first_bad(bad)
            values = "integer values >= 0" if n_cat is None else (
                f"values in {{0, ..., {int(n_cat[col]) - 1}}}"
            )  # fmt: skip
            raise OutOfSupportError(
                f"categorical feature {int(self.c_idx[col])} takes {values}; "
                f"row {row} holds {float(Xc[row, col])}"
            )
        return Xc.long()

    # -------------------------------------------------------------- set-up
    def _setup(self, X_t: torch.Tensor, y_t: torch.Tensor) -> None:
        """First fit: feature kinds, number of classes and categories; empty statistics."""
        D = X_t.shape[1]
        features = self.config["features"]
        kinds = [features] * D if isinstance(features, str) else list(features)
        if len(kinds) != D:
            raise ShapeError(f"X has {D} columns but features lists {len(kinds)} kinds")
        dev = X_t.device
        for name, kind in zip(("g_idx", "b_idx", "c_idx"), KINDS):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            setattr(self, name, torch.tensor(idx, dtype=torch.long, device=dev))
        n_classes = self.config["n_classes"]
        if n_classes is None:
            if not bool((y_t >= 0).any()):
                raise ConfigurationError("no label is given (all -1): pass n_classes=...")
            n_classes = int(y_t.max()) + 1
        Dc = self.c_idx.numel()
        n_cat = self.config["n_categories"]
        if n_cat is None:
            Xc = self._check_categorical(X_t[:, self.c_idx], None)
            n_cat_t = (Xc.max(0).values + 1) if Dc else torch.zeros(0, dtype=torch.long)
        elif isinstance(n_cat, int):
            n_cat_t = torch.full((Dc,), n_cat, dtype=torch.long)
        else:
            if len(n_cat) != Dc:
                raise ShapeError(
                    f"n_categories lists {len(n_cat)} sizes for {Dc} categorical features"
                )
            n_cat_t = torch.tensor(n_cat, dtype=torch.long)
        self.n_cat = n_cat_t.to(dev)
        C, Dg, Db = n_classes, self.g_idx.numel(), self.b_idx.numel()
        V = int(self.n_cat.max()) if Dc else 0
        check_allocation(
            C * (4 * Dg + 4 * Db + 3 * Dc * V + 2) + 2 * X_t.shape[0] * C,
            self.dtype,
            f"NaiveBayes tables for {C} classes, {D} features ({V} categories at most)",
        )
        z = dict(dtype=self.dtype, device=dev)
        self._set_stats(
            _Stats(
                torch.zeros(C, **z),
                torch.zeros(C, Dg, **z),
                torch.zeros(C, Dg, **z),
                torch.zeros(C, Db, **z),
                torch.zeros(C, Dc, V, **z),
            )
        )
        self.log_class_prior = torch.zeros(C, **z)
        self.stats_valid = True

    def _set_stats(self, stats: _Stats) -> None:
        for name, value in stats.tensors().items():
            setattr(self, name, value)

    def _stats(self) -> _Stats:
        return _Stats(
            self.stat_weight, self.stat_g_mean, self.stat_g_m2, self.stat_b_ones, self.stat_c_counts
        )

    # ------------------------------------------------------ closed-form pieces
    def _batch_stats(
        self,
        Xg: torch.Tensor,
        Xb: torch.Tensor,
        Xc: torch.Tensor,
        resp: torch.Tensor | None,
        y: torch.Tensor | None,
    ) -> _Stats:
        """Sufficient statistics of one batch: hard labels ``y`` or responsibilities ``resp``."""
        C = self.n_classes
        N = Xg.shape[0] if Xg.numel() else (Xb.shape[0] if Xb.numel() else Xc.shape[0])
        if resp is None:
            assert y is not None
            resp = torch.zeros(y.shape[0], C, dtype=self.dtype, device=y.device)
            resp.scatter_(1, y.unsqueeze(1), 1.0)
        weight = resp.sum(0)
        safe = weight.clamp_min(torch.finfo(self.dtype).tiny).unsqueeze(-1)
        g_mean = (resp.T @ Xg) / safe
        if y is not None:  # hard labels: two passes over the data, as matrix products
            g_m2 = torch.zeros_like(g_mean)
            for rows in _blocks(N, Xg.shape[1]):
                g_m2.addmm_(resp[rows].T, g_mean[y[rows]].sub_(Xg[rows]).square_())
        else:  # soft: a loop over the (few) classes, each a matrix-vector product
            g_m2 = (
                torch.stack([resp[:, c] @ (Xg - g_mean[c]) ** 2 for c in range(C)]) if C else g_mean
            )
        b_ones = resp.T @ Xb
        Dc, V = self.stat_c_counts.shape[1:]
        if Dc:
            flat = Xc + torch.arange(Dc, device=Xc.device) * V  # (N, Dc) cell of (d, v)
            if y is not None:
                key = (y.unsqueeze(1) * (Dc * V) + flat).reshape(-1)
                counts = torch.bincount(key, minlength=C * Dc * V).to(self.dtype)
            else:
                counts_t = torch.zeros(Dc * V, C, dtype=self.dtype, device=Xc.device)
                counts_t.index_add_(
                    0, flat.reshape(-1), resp.unsqueeze(1).expand(N, Dc, C).reshape(-1, C)
                )
                counts = counts_t.T
            c_counts = counts.reshape(C, Dc, V)
        else:
            c_counts = self.stat_c_counts.new_zeros(C, 0, V)
        return _Stats(weight, g_mean, g_m2, b_ones, c_counts)

    def _epsilon(self, max_variance: torch.Tensor) -> torch.Tensor:
        """epsilon = var_smoothing * max_d Var(x_d) (scikit-learn's); when every Gaussian
        feature is constant (max_d Var = 0, where scikit-learn's epsilon 0 gives NaN
        posteriors) and var_smoothing > 0, epsilon = 1: the constant features then cancel
        in Bayes' rule for any epsilon > 0, and 1 keeps the arithmetic well scaled."""
        epsilon = self.var_smoothing * max_variance
        fallback = 1.0 if self.var_smoothing > 0 else 0.0
        return torch.where(max_variance > 0, epsilon, torch.full_like(epsilon, fallback))

    def _set_params(self, stats: _Stats, epsilon: torch.Tensor | None = None) -> None:
        """MAP parameters from statistics (the M-step); smoothing as in scikit-learn."""
        C = stats.weight.numel()
        total = stats.weight.sum()
        prior = (stats.weight + self.class_alpha) / (total + C * self.class_alpha)
        self.log_class_prior = prior.log()
        w = stats.weight.unsqueeze(-1)
        if stats.g_mean.numel():
            # pooled mean and variance of all rows (law of total variance)
            mean_all = (w * stats.g_mean).sum(0) / total
            m2_all = stats.g_m2.sum(0) + (w * (stats.g_mean - mean_all) ** 2).sum(0)
            var_all = m2_all / total
            if epsilon is None:
                epsilon = self._epsilon(var_all.max())
            has = w > 0  # a class with no data keeps the pooled estimate
            self.g_mean = torch.where(has, stats.g_mean, mean_all)
            self.g_var = torch.where(has, stats.g_m2 / w.clamp_min(1e-300), var_all) + epsilon
            if not bool((self.g_var > 0).all()):
                k, d = (int(i) for i in (self.g_var <= 0).nonzero()[0])
                raise ConfigurationError(
                    f"Gaussian feature {int(self.g_idx[d])} has zero variance in class {k} "
                    f"(every value is {float(self.g_mean[k, d])}) and var_smoothing = 0: the "
                    "maximum-likelihood Gaussian is a point mass; use var_smoothing > 0"
                )
            self.g_shift = mean_all
            self.epsilon = torch.as_tensor(epsilon, dtype=self.dtype, device=w.device)
        else:
            self.g_mean, self.g_var = stats.g_mean, stats.g_m2
            self.g_shift = stats.g_mean.new_zeros(0)
        p = (stats.b_ones + self.alpha) / (w + 2 * self.alpha)
        self.b_log_p, self.b_log_1mp = p.log(), torch.log1p(-p)
        V = stats.c_counts.shape[-1]
        valid = torch.arange(V, device=w.device) < self.n_cat.unsqueeze(-1)  # (Dc, V)
        denom = w.unsqueeze(-1) + self.alpha * self.n_cat.to(self.dtype).unsqueeze(-1)
        log_prob = ((stats.c_counts + self.alpha) / denom).log()
        self.c_log_prob = log_prob.masked_fill(~valid, -math.inf)

    def _joint_log_likelihood(
        self, Xg: torch.Tensor, Xb: torch.Tensor, Xc: torch.Tensor
    ) -> torch.Tensor:
        """log p(x_n, y = c) = log p(c) + sum_d log p(x_nd | c) (eq. 10), shape (N, C).

        Vectorised as matrix products: the Gaussian part expands
        (x - mu)^2 / s^2 = x^2/s^2 - 2 x mu/s^2 + mu^2/s^2, with x and mu centred on the
        pooled mean first to keep the expansion accurate.  Rows go in blocks so that the
        temporaries stay small (a fresh N x D temporary costs more than the arithmetic).
        """
        N = max(Xg.shape[0], Xb.shape[0], Xc.shape[0])
        out = torch.empty(N, self.n_classes, dtype=self.dtype, device=self.log_class_prior.device)
        const = self.log_class_prior.clone()
        terms = []
        if Xg.numel():
            prec = self.g_var.reciprocal()
            mu = self.g_mean - self.g_shift
            const += -0.5 * ((mu * mu * prec).sum(-1) + (2 * math.pi * self.g_var).log().sum(-1))
            terms.append((mu * prec).T)
            terms.append(-0.5 * prec.T)
        if Xb.numel():
            const += self.b_log_1mp.sum(-1)
            b_weight = (self.b_log_p - self.b_log_1mp).T
        if Xc.numel():
            C, Dc, V = self.c_log_prob.shape
            table = self.c_log_prob.reshape(C, Dc * V).T.contiguous()
            offsets = torch.arange(Dc, device=Xc.device) * V
        for rows in _blocks(N, Xg.shape[1] + Xb.shape[1] + Xc.shape[1]):
            block = out[rows]
            block.copy_(const.expand_as(block))
            if Xg.numel():
                x = Xg[rows] - self.g_shift
                block.addmm_(x, terms[0])
                block.addmm_(x.square_(), terms[1])
            if Xb.numel():
                block.addmm_(Xb[rows], b_weight)
            if Xc.numel():
                block += F.embedding_bag(Xc[rows] + offsets, table, mode="sum")
        return out

    def _log_likelihood_from_stats(self, stats: _Stats) -> torch.Tensor:
        """sum_n log p(x_n, y_n) of labelled data from its statistics alone (eq. 10): no
        pass over the data. Gaussian: sum_n (x - mu)^2 = M2 + W (xbar - mu)^2."""
        w = stats.weight
        lp = (w * self.log_class_prior).sum()
        if stats.g_mean.numel():
            v = self.g_var
            sq = stats.g_m2 + w.unsqueeze(-1) * (stats.g_mean - self.g_mean) ** 2
            lp = lp - 0.5 * (w.unsqueeze(-1) * (2 * math.pi * v).log() + sq / v).sum()
        if stats.b_ones.numel():
            zeros = w.unsqueeze(-1) - stats.b_ones
            lp = lp + torch.where(stats.b_ones > 0, stats.b_ones * self.b_log_p, 0).sum()
            lp = lp + torch.where(zeros > 0, zeros * self.b_log_1mp, 0).sum()
        if stats.c_counts.numel():
            counts = stats.c_counts
            lp = lp + torch.where(counts > 0, counts * self.c_log_prob, 0).sum()
        return lp

    def _closed_form_result(self, stats: _Stats) -> FitResult:
        """The record of a closed-form fit: one value, log p(theta) + sum_n log p(x_n, y_n)."""
        value = float(self._log_prior() + self._log_likelihood_from_stats(stats))
        return FitResult("counts", [value], objective_name="log_joint")

    def _log_prior(self) -> torch.Tensor:
        """log p(theta) of the priors whose MAP is the smoothed estimate (Gaussians: flat)."""
        lp = dist.Dirichlet(self._class_concentration()).log_prob(self.log_class_prior.exp())
        if self.b_log_p.numel():
            a = torch.full_like(self.b_log_p, self.alpha + 1.0)  # on the model's device
            lp = lp + dist.Beta(a, a).log_prob(self.b_log_p.exp()).sum()
        for V, cols in self._category_groups():
            lp = (
                lp
                + dist.Dirichlet(self._feature_concentration(V))
                .log_prob(self.c_log_prob[:, cols, :V].exp())
                .sum()
            )
        return lp

    def _class_concentration(self) -> torch.Tensor:
        return torch.full_like(self.log_class_prior, self.class_alpha + 1.0)

    def _feature_concentration(self, V: int) -> torch.Tensor:
        return torch.full((V,), self.alpha + 1.0, dtype=self.dtype, device=self.device)

    def _category_groups(self) -> list[tuple[int, torch.Tensor]]:
        """Categorical features grouped by their number of categories: (V, columns)."""
        return [
            (int(V), (self.n_cat == V).nonzero().squeeze(-1))
            for V in torch.unique(self.n_cat).tolist()
        ]

    # -------------------------------------------------------------- fitting
    def partial_fit(self, X: Any, y: Any) -> NaiveBayes:
        """Add a labelled batch to the sufficient statistics and refit in closed form.

        Streaming ``partial_fit`` over batches gives the same model as ``fit`` on their
        concatenation (the statistics pool exactly).  Every label must be given.
        """
        if self.fitted and not self.stats_valid:
            raise ConfigurationError(
                "partial_fit continues closed-form statistics, but this model was fitted by "
                "SVI or semi-supervised EM; call fit(X, y) on all the data instead"
            )
        started = time.perf_counter()
        X_t = self._as_matrix(X, first=not self.fitted)
        y_t = self._as_labels(y, X_t.shape[0], X_t.device, allow_missing=False)
        if not self.fitted:
            self._setup(X_t, y_t)
        self._check_label_range(y_t)
        Xg, Xb, Xc = self._prepare(X_t)
        self._set_stats(self._stats().merge(self._batch_stats(Xg, Xb, Xc, None, y_t)))
        self._set_params(self._stats())
        return self._set_result(self._closed_form_result(self._stats()), started)

    def _check_label_range(self, y_t: torch.Tensor) -> None:
        if bool((y_t >= self.n_classes).any()):
            i = first_bad(y_t >= self.n_classes)[0]
            raise OutOfSupportError(
                f"y[{i}] = {int(y_t[i])} is out of range: this model has "
                f"{self.n_classes} classes {{0, ..., {self.n_classes - 1}}}"
            )

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        method: Literal["em", "svi"] = "em",
        max_iter: int = 200,
        tol: float = 1e-10,
        restarts: int = 1,
        steps: int = 1000,
        lr: float = 0.05,
        batch_size: int | None = None,
        seed: int | None = 0,
        progress: bool = False,
    ) -> NaiveBayes:
        """Fit p(y) and p(x_d | y) by MAP; rows with y = -1 are summed out (semi-supervised).

        With every label given, the fit is the closed form (one pass; ``fit_result_``
        holds the log joint log p(theta) + sum_n log p(x_n, y_n), computed from the
        statistics). With missing labels it maximises
        log p(theta) + sum_labelled log p(x, y) + sum_unlabelled log sum_y p(x, y) by EM
        (``method="em"``, through :func:`pyrobn.infer.em.run_em`: E-step p(y | x) by
        Bayes' rule, M-step the smoothed counts with soft weights; monotone; at most
        ``max_iter`` iterations, stopping when the gain is below ``tol`` relative; the
        first of ``restarts`` starts from the labelled rows, the others (and every start
        when no row is labelled) from random responsibilities drawn from a local generator
        seeded by ``seed``), or by SVI on :meth:`model` / :meth:`guide` with
        ``TraceEnum_ELBO`` (``method="svi"``: ``steps`` Adam steps at rate ``lr``, through
        ``fit_svi``, on minibatches of ``batch_size`` labelled and unlabelled rows if given).
        ``seed`` never touches the caller's random streams.

        Returns:
            the model; the record is ``fit_result_`` (objective ``"log_joint"``).
        """
        if method not in ("em", "svi"):
            raise ConfigurationError(f"method must be 'em' or 'svi', got {method!r}")
        max_iter = check_int(max_iter, "max_iter")
        restarts = check_int(restarts, "restarts")
        if batch_size is not None:
            batch_size = check_int(batch_size, "batch_size")
        started = time.perf_counter()
        X_t = self._as_matrix(X, first=True)
        y_t = self._as_labels(y, X_t.shape[0], X_t.device, allow_missing=True)
        self.log_class_prior = self.log_class_prior.new_zeros(0)  # a fresh fit
        self.fit_result_ = None
        self._setup(X_t, y_t)
        self._check_label_range(y_t)
        Xg, Xb, Xc = self._prepare(X_t)
        labelled = y_t >= 0
        with self._fitting(seed):
            if bool(labelled.all()):
                self._set_stats(self._batch_stats(Xg, Xb, Xc, None, y_t))
                self._set_params(self._stats())
                result = self._closed_form_result(self._stats())
                if method == "svi":
                    result = self._fit_svi(X_t, y_t, steps, lr, batch_size, progress)
            else:
                result = self._fit_semi_supervised(
                    X_t, (Xg, Xb, Xc), y_t, method, max_iter, tol, restarts, steps, lr,
                    batch_size, seed, progress,
                )  # fmt: skip
        return self._set_result(result, started)

    def _fit_semi_supervised(
        self, X_t: torch.Tensor, prepared: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        y_t: torch.Tensor, method: str, max_iter: int, tol: float, restarts: int, steps: int,
        lr: float, batch_size: int | None, seed: int | None, progress: bool,
    ) -> FitResult:  # fmt: skip
        """Initialise from the labelled rows, then EM (through run_em) or SVI on all rows."""
        Xg, Xb, Xc = prepared
        labelled = y_t >= 0
        parts = [(t[labelled], t[~labelled]) for t in (Xg, Xb, Xc)]
        (Xg_l, Xg_u), (Xb_l, Xb_u), (Xc_l, Xc_u) = parts
        y_l = y_t[labelled]
        n_u = int((~labelled).sum())
        C = self.n_classes
        labelled_stats = self._batch_stats(Xg_l, Xb_l, Xc_l, None, y_l)
        # epsilon from the variance of all rows, labelled or not (as scikit-learn's fit)
        epsilon = self._epsilon(Xg.var(0, unbiased=False).max()) if Xg.numel() else None

        def random_start(g: torch.Generator) -> _Stats:
            resp = torch.rand(n_u, C, generator=g, dtype=torch.float64)
            resp = (resp / resp.sum(1, keepdim=True)).to(self.dtype).to(y_t.device)
            return labelled_stats.merge(self._batch_stats(Xg_u, Xb_u, Xc_u, resp, None))

        def begin(restart: int, g: torch.Generator) -> _Stats:
            if restart == 0 and bool(labelled.any()):
                return labelled_stats
            return random_start(g)  # no label at all: random responsibilities cluster

        def objective(stats: _Stats) -> tuple[float, torch.Tensor, torch.Tensor]:
            self._set_params(stats, epsilon)
            jll_u = self._joint_log_likelihood(Xg_u, Xb_u, Xc_u)
            log_evidence = logsumexp_rows(jll_u)
            value = float(self._log_prior()) + float(log_evidence.sum())
            if y_l.numel():
                jll_l = self._joint_log_likelihood(Xg_l, Xb_l, Xc_l)
                value += float(jll_l.gather(1, y_l.unsqueeze(1)).sum())
            return value, jll_u, log_evidence

        def step(stats: _Stats) -> tuple[_Stats, float]:
            value, jll_u, log_evidence = objective(stats)
            resp = (jll_u - log_evidence.unsqueeze(-1)).exp()
            return labelled_stats.merge(self._batch_stats(Xg_u, Xb_u, Xc_u, resp, None)), value

        if method == "svi":
            self._set_params(begin(0, generator(seed)), epsilon)
            return self._fit_svi(X_t, y_t, steps, lr, batch_size, progress)
        stats, result = run_em(
            begin,
            step,
            max_iter=max_iter,
            tol=tol,
            restarts=restarts,
            seed=seed,
            objective_name="log_joint",
            final=lambda s: objective(s)[0],
        )
        self._set_params(stats, epsilon)
        self._set_stats(stats)
        self.stats_valid = False
        return result

    # --------------------------------------------------------------- queries
    def joint_log_likelihood(self, X: Any) -> torch.Tensor:
        """log p(x_n, y = c) for every row and class (eq. 10), shape (N, C)."""
        self._require_fitted()
        return self._joint_log_likelihood(*self._prepare(self._as_matrix(X)))

    def predict_log_proba(self, X: Any) -> torch.Tensor:
        """log p(y | x) = log p(x, y) - log sum_c p(x, c) (Bayes' rule in log space)."""
        jll = self.joint_log_likelihood(X)
        evidence = logsumexp_rows(jll)
        if not bool(torch.isfinite(evidence).all()):
            row = int((~torch.isfinite(evidence)).nonzero()[0])
            raise ZeroProbabilityEvidence(
                f"row {row} of X has probability 0 under every class (a category unseen in "
                "training with concentration 1, the unsmoothed MLE): p(y | x) is undefined"
            )
        return jll - evidence.unsqueeze(-1)

    def predict_proba(self, X: Any) -> torch.Tensor:
        """p(y | x), shape (N, C); rows sum to 1."""
        return self.predict_log_proba(X).exp()

    def predict(self, X: Any) -> torch.Tensor:
        """The most probable class argmax_c p(c | x) for every row."""
        return self.joint_log_likelihood(X).argmax(-1)

    def log_prob(self, X: Any, y: Any = None) -> torch.Tensor:
        """log p(x_n, y_n) per row (eq. 10), or log p(x_n) = log sum_c p(x_n, c) without y.

        Rows with y = -1 get log p(x_n) too.
        """
        jll = self.joint_log_likelihood(X)
        marginal = logsumexp_rows(jll)
        if y is None:
            return marginal
        y_t = self._as_labels(y, jll.shape[0], jll.device, allow_missing=True)
        self._check_label_range(y_t)
        joint = jll.gather(1, y_t.clamp_min(0).unsqueeze(1)).squeeze(1)
        return torch.where(y_t >= 0, joint, marginal)

    def log_joint(self, X: Any, y: Any) -> torch.Tensor:
        """The objective that ``fit`` maximises: log p(theta) + sum_n log p(x_n, y_n).

        Missing labels (-1) are summed out: log p(x_n) = log sum_c p(x_n, c).  This equals
        minus ``TraceEnum_ELBO`` of :meth:`model` / :meth:`guide` with the guide at the
        fitted parameters (the guide is a point mass, so ELBO = log joint).
        """
        return self._log_prior() + self.log_prob(X, y).sum()

    def score(self, X: Any, y: Any) -> float:
        """Accuracy of :meth:`predict` on labelled data."""
        predicted = self.predict(X)
        y_t = self._as_labels(y, predicted.shape[0], self.device, allow_missing=False)
        self._check_label_range(y_t)
        return float((predicted == y_t).double().mean())

    # ------------------------------------------------------- Pyro model/guide
    def _site_shapes(self) -> dict[str, tuple[dist.Distribution, Any, torch.Tensor]]:
        """Per global site: (prior, constraint, current value). Gaussian priors are flat."""
        C = self.n_classes
        Dg, Db = self.g_idx.numel(), self.b_idx.numel()
        sites: dict[str, tuple[dist.Distribution, Any, torch.Tensor]] = {
            "class_weights": (
                dist.Dirichlet(self._class_concentration()),
                constraints.simplex,
                self.log_class_prior.exp(),
            )
        }
        if Dg:
            sites["gaussian_loc"] = (
                dist.ImproperUniform(constraints.real, (), (C, Dg)),
                constraints.real,
                self.g_mean,
            )
            sites["gaussian_var"] = (
                dist.ImproperUniform(constraints.positive, (), (C, Dg)),
                constraints.positive,
                self.g_var,
            )
        if Db:
            a = torch.full((C, Db), self.alpha + 1.0, dtype=self.dtype, device=self.device)
            sites["bernoulli_probs"] = (
                dist.Beta(a, a).to_event(2),
                constraints.unit_interval,
                self.b_log_p.exp(),
            )
        for V, cols in self._category_groups():
            conc = self._feature_concentration(V).expand(C, cols.numel(), V)
            sites[f"categorical_probs_{V}"] = (
                dist.Dirichlet(conc).to_event(2),
                constraints.simplex,
                self.c_log_prob[:, cols, :V].exp(),
            )
        return sites

    def model(self, X: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> None:
        """Eq. 10 with priors: theta ~ p(theta); y_n ~ Cat(pi); x_nd | y_n ~ p(x_d | theta_y).

        ``X`` is the (N, D) data (Bernoulli columns already 0/1, categorical columns
        integer-valued), ``y`` the labels with -1 for missing: the labelled rows observe
        ``y_labelled``; the unlabelled rows' ``y_unlabelled`` is enumerated in parallel.
        """
        params = {
            name: pyro.sample(name, prior) for name, (prior, _, _) in self._site_shapes().items()
        }
        labelled = y >= 0
        for part, rows in (("labelled", labelled), ("unlabelled", ~labelled)):
            X_part = X[rows]
            n = X_part.shape[0]
            if n == 0:
                continue
            size = min(batch_size, n) if batch_size else None
            with pyro.plate(f"{part}", n, subsample_size=size) as idx:
                obs = y[rows][idx] if part == "labelled" else None
                y_site = pyro.sample(
                    f"y_{part}",
                    dist.Categorical(params["class_weights"]),
                    obs=obs,
                    infer={} if obs is not None else {"enumerate": "parallel"},
                )
                self._observe(part, X_part[idx], y_site, params)

    def _observe(
        self, part: str, X: torch.Tensor, y: torch.Tensor, params: dict[str, torch.Tensor]
    ) -> None:
        if self.g_idx.numel():
            loc, var = params["gaussian_loc"][y], params["gaussian_var"][y]
            pyro.sample(
                f"x_gaussian_{part}",
                dist.Normal(loc, var.sqrt()).to_event(1),
                obs=X[:, self.g_idx],
            )
        if self.b_idx.numel():
            Xb = X[:, self.b_idx]
            if self.binarize is not None:
                Xb = (Xb > self.binarize).to(X.dtype)
            pyro.sample(
                f"x_bernoulli_{part}",
                dist.Bernoulli(params["bernoulli_probs"][y]).to_event(1),
                obs=Xb,
            )
        for V, cols in self._category_groups():
            probs = params[f"categorical_probs_{V}"][y]
            pyro.sample(
                f"x_categorical_{V}_{part}",
                dist.Categorical(probs).to_event(1),
                obs=X[:, self.c_idx[cols]].long(),
            )

    def guide(self, X: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> None:
        """Point masses at the parameters (so the ELBO is the MAP objective ``log_joint``).

        The Pyro params start at the current fitted values; their names are scoped by
        this module's unique name.
        """
        for name, (prior, constraint, value) in self._site_shapes().items():
            q = pyro.param(
                f"{self._pyro_name}.q_{name}", value.detach().clone(), constraint=constraint
            )
            pyro.sample(name, dist.Delta(q, event_dim=prior.event_dim))

    def _fit_svi(
        self, X_t: torch.Tensor, y_t: torch.Tensor, steps: int, lr: float,
        batch_size: int | None, progress: bool,
    ) -> FitResult:  # fmt: skip
        """Maximise the ELBO of model/guide (= the MAP objective) with ``fit_svi``."""
        store = pyro.get_param_store()
        for name in self._site_shapes():
            forget_params(f"{self._pyro_name}.q_{name}")
        history = fit_svi(
            self.model, self.guide, X_t, y_t, batch_size=batch_size,
            loss=TraceEnum_ELBO(max_plate_nesting=self.max_plate_nesting),
            optim=Adam({"lr": lr}), steps=steps, progress=progress,
            description=self._pyro_name,
        )  # fmt: skip
        with torch.no_grad():
            q = {
                name: store[f"{self._pyro_name}.q_{name}"].detach() for name in self._site_shapes()
            }
            self.log_class_prior = q["class_weights"].log()
            if "gaussian_loc" in q:
                self.g_mean, self.g_var = q["gaussian_loc"].clone(), q["gaussian_var"].clone()
            if "bernoulli_probs" in q:
                self.b_log_p = q["bernoulli_probs"].log()
                self.b_log_1mp = torch.log1p(-q["bernoulli_probs"])
            c_log_prob = self.c_log_prob.clone()
            for V, cols in self._category_groups():
                c_log_prob[:, cols, :V] = q[f"categorical_probs_{V}"].log()
            self.c_log_prob = c_log_prob
        self.stats_valid = False
        return FitResult.from_history(history, objective_name="log_joint")

    # ------------------------------------------------------------ structure
    def graph(self) -> ModelGraph:
        """Naive Bayes as a Bayesian network (notes 2.1.3.2, Figura 3): y -> x_d for every d.

        One node per feature once the model knows them (fitted, or ``features`` given as
        a list), as in Figura 3: x_i and x_j are d-separated given y (the naive
        assumption). Before that, one node x_d in a plate over the D features.
        """
        from pyrobn.graph import GraphNode, ModelGraph

        if self.fitted:
            kinds = self.kinds
        elif isinstance(self.config["features"], list):
            kinds = list(self.config["features"])
        else:
            kinds = []
        y = GraphNode("y", "latent", discrete=True, label="y")
        prior = GraphNode("class_prior", "parameter", label="π")
        if not kinds:
            x = GraphNode("x_d", "observed", label="x_d")
            return ModelGraph(
                [prior, y, x],
                [("class_prior", "y"), ("y", "x_d")],
                plates={"features": (["x_d"], "D"), "data": (["y", "x_d"], "N")},
                title="Figura 3: Naive Bayes",
            )
        names = [f"x{d + 1}" for d in range(len(kinds))]
        nodes = [prior, y] + [
            GraphNode(name, "observed", discrete=kind != "gaussian", label=f"x_{d + 1}")
            for d, (name, kind) in enumerate(zip(names, kinds))
        ]
        return ModelGraph(
            nodes,
            [("class_prior", "y")] + [("y", name) for name in names],
            plates={"data": (["y", *names], "N")},
            title="Figura 3: Naive Bayes",
        )

    @property
    def n_parameters(self) -> int:
        """Free parameters: C - 1 class weights, and per feature 2C (Gaussian: mean and
        variance), C (Bernoulli) or C (V_d - 1) (categorical). Needs a fitted model."""
        self._require_fitted()
        C = self.n_classes
        per_feature = 2 * C * self.g_idx.numel() + C * self.b_idx.numel()
        per_feature += C * int((self.n_cat - 1).sum()) if self.n_cat.numel() else 0
        return C - 1 + per_feature

    @property
    def n_parameters_joint(self) -> int:
        """Free parameters of the full joint table p(x, y) of discrete features,
        C prod_d V_d - 1 (Bernoulli: V_d = 2): what eq. 10's factorisation saves."""
        self._require_fitted()
        if self.g_idx.numel():
            raise ConfigurationError("a joint table needs discrete features (no Gaussian ones)")
        sizes = [2] * self.b_idx.numel() + self.n_cat.tolist()
        return self.n_classes * math.prod(sizes) - 1
