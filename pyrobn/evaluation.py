"""The benchmark harness every generative paradigm plugs into (notes 2.2.2; issues 17-18).

One benchmark: the book's digits split (:func:`pyrobn.datasets.book_digits`: 1000 train,
350 validation, 447 test images of 64 pixels with 17 grey levels), and one set of
figures for every paradigm, with or without a likelihood:

* **test NLL** in nats per image, -(1/N) Σ_n log p(x_n), summed over the 64 pixels:
  exact (autoregressive model), or a stated upper bound (a dequantised flow, a VAE's
  -ELBO or -IWAE, a diffusion bound), or none (a GAN); **bits per dimension** =
  NLL / (D ln 2);
* **samples per second** of ``model.sample``;
* **training time per epoch** against a plain-PyTorch loop of the same network
  (:func:`plain_torch_trainer`, :func:`compare_epoch_times`: interleaved runs, medians);
* **sample quality**: the Fréchet distance between generated and test images in the
  feature space of a small classifier trained on the training split
  (:class:`DigitClassifier`, :func:`frechet_distance`), and that classifier's accuracy
  on class-conditional samples (eq. 19: does a sample of "3" read as a 3?); for
  low-dimensional data without a classifier (the swiss roll), the energy distance of
  samples to held-out points (:func:`energy_distance`).

The protocol a model implements (duck-typed; :class:`GenerativeModel`)::

    nll_kind: str                 # "exact" | "bound" | "none"
    n_classes: int                # > 0 if sample(..., y=...) generates a chosen class
    nll(x, y=None, *, seed=None)  # (n,) nats per row: -log p(x) or an upper bound on it
    sample(n, *, y=None, seed=None)   # (n, D) values on the data's scale (levels 0..L-1)
    fit(x, y=None, *, epochs=..., batch_size=..., seed=..., progress=...)  # returns self

:func:`evaluate` runs everything for one fitted model; :func:`summarize` gives mean ± sd
over seeds and :func:`format_table` a Markdown table.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from pyrobn.device import to_tensor
from pyrobn.errors import ConfigurationError, ShapeError
from pyrobn.random import seeded
from pyrobn.validation import check_allocation, check_finite, check_int, check_positive

#: what a model's ``nll`` is
NLL_KINDS = ("exact", "bound", "none")


@runtime_checkable
class GenerativeModel(Protocol):
    """The harness protocol (see the module docstring); ``nll`` may be absent when
    ``nll_kind == "none"``."""

    nll_kind: str

    def sample(self, n: int, *, y: Any = None, seed: int | None = None) -> torch.Tensor: ...


@dataclass
class Adapter:
    """Plug a model into the harness without touching its class: the protocol by functions.

    ``sample_fn(n, y=None, seed=None)`` -> (n, D) draws on the data's scale;
    ``nll_fn(x, y=None, seed=None)`` -> (n,) nats, exact or an upper bound (as
    ``nll_kind`` says), or None for a model without a likelihood (a GAN).

    >>> vae_like = Adapter(lambda n, y=None, seed=None: torch.zeros(n, 64),
    ...                    lambda x, y=None, seed=None: torch.full((len(x),), 90.0), "bound")
    >>> nll_score(vae_like, torch.zeros(3, 64)).kind
    'bound'
    """

    sample_fn: Callable[..., torch.Tensor]
    nll_fn: Callable[..., torch.Tensor] | None = None
    nll_kind: str = "none"
    n_classes: int = 0

    def __post_init__(self) -> None:
        if self.nll_kind not in NLL_KINDS:
            raise ConfigurationError(f"nll_kind must be one of {NLL_KINDS}, got {self.nll_kind!r}")
        if (self.nll_fn is None) != (self.nll_kind == "none"):
            raise ConfigurationError("give nll_fn exactly when nll_kind is 'exact' or 'bound'")

    def sample(self, n: int, *, y: Any = None, seed: int | None = None) -> torch.Tensor:
        return self.sample_fn(n, y=y, seed=seed)

    def nll(self, x: Any, y: Any = None, *, seed: int | None = None) -> torch.Tensor:
        assert self.nll_fn is not None
        return self.nll_fn(x, y=y, seed=seed)


# --------------------------------------------------------------------------- likelihood
@dataclass
class NLLScore:
    """Mean negative log-likelihood per image and what it is."""

    nats: float  # mean over images of -log p(x) (or its upper bound), nats per image
    stderr: float  # standard error of that mean over the images
    bits_per_dim: float  # nats / (D ln 2)
    kind: str  # "exact" | "bound" | "none"
    n: int

    def __str__(self) -> str:
        tag = {"exact": "exact", "bound": "upper bound", "none": "no likelihood"}[self.kind]
        return (
            f"{self.nats:.2f} ± {self.stderr:.2f} nats/image "
            f"({self.bits_per_dim:.3f} bits/dim, {tag})"
        )


def bits_per_dim(nats_per_image: float, dim: int) -> float:
    """NLL in bits per dimension: nats / (D ln 2)."""
    return nats_per_image / (check_int(dim, "dim") * math.log(2))


def nll_score(model: Any, x: Any, y: Any = None, *, seed: int | None = 0) -> NLLScore:
    """The mean of ``model.nll(x)`` over the rows: nats per image, its standard error,
    bits/dim, and whether it is exact or an upper bound (``model.nll_kind``)."""
    kind = getattr(model, "nll_kind", None)
    if kind not in NLL_KINDS:
        raise ConfigurationError(
            f"model.nll_kind must be one of {NLL_KINDS}, got {kind!r} "
            f"({type(model).__name__} does not implement the harness protocol)"
        )
    x = to_tensor(x)
    if x.dim() != 2:
        raise ShapeError(f"x must have shape (n, D), got {tuple(x.shape)}")
    if kind == "none":
        return NLLScore(math.nan, math.nan, math.nan, "none", x.shape[0])
    values = model.nll(x, y, seed=seed) if y is not None else model.nll(x, seed=seed)
    values = torch.as_tensor(values).detach().double().cpu()
    check_finite(values, f"{type(model).__name__}.nll(x)")
    nats = float(values.mean())
    stderr = float(values.std() / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return NLLScore(nats, stderr, bits_per_dim(nats, x.shape[1]), kind, x.shape[0])


# --------------------------------------------------------------------------- features
class DigitClassifier(nn.Module):
    """A small MLP classifier of images, whose last hidden layer is the feature space
    of the sample-quality score (the role Inception plays for FID).

    Inputs are grey levels 0..L-1 (any real value is accepted: a sampler without
    discrete output is scored too), scaled to [0, 1]; ``features(x)`` is the
    ``hidden[-1]``-dimensional activation before the output layer.
    """

    def __init__(
        self, data_dim: int, levels: int, n_classes: int = 10, hidden: Sequence[int] = (128, 64)
    ) -> None:
        super().__init__()
        self.data_dim = check_int(data_dim, "data_dim")
        self.levels = check_int(levels, "levels", low=2)
        self.n_classes = check_int(n_classes, "n_classes", low=2)
        sizes = [data_dim, *(check_int(h, "hidden") for h in hidden)]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], n_classes)
        self.test_accuracy: float = math.nan

    def _inputs(self, x: Any) -> torch.Tensor:
        p = next(self.parameters())
        x = to_tensor(x, dtype=p.dtype, device_=p.device)
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ShapeError(f"x must have shape (n, {self.data_dim}), got {tuple(x.shape)}")
        check_finite(x, "x")
        return x / (self.levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    @torch.no_grad()
    def features(self, x: Any) -> torch.Tensor:
        """The feature vectors φ(x): shape (n, hidden[-1])."""
        was = self.training
        self.eval()
        try:
            return self.body(self._inputs(x))
        finally:
            self.train(was)

    @torch.no_grad()
    def predict(self, x: Any) -> torch.Tensor:
        """The most probable class of each row."""
        was = self.training
        self.eval()
        try:
            return self(self._inputs(x)).argmax(-1)
        finally:
            self.train(was)

    def accuracy(self, x: Any, y: Any) -> float:
        """The fraction of rows whose predicted class is ``y``."""
        pred = self.predict(x)
        y = to_tensor(y, dtype=torch.long, device_=pred.device)
        return float((pred == y).double().mean())


def train_classifier(
    x_train: Any,
    y_train: Any,
    x_val: Any,
    y_val: Any,
    *,
    levels: int,
    n_classes: int = 10,
    epochs: int = 200,
    seed: int = 0,
    x_test: Any = None,
    y_test: Any = None,
) -> DigitClassifier:
    """Train :class:`DigitClassifier` on the training split (Adam, weight decay, the
    epoch with the best validation accuracy kept); with a test split, record its
    accuracy in ``test_accuracy``. Seeded locally: the caller's RNG is untouched."""
    x_train = to_tensor(x_train, dtype=torch.float32)
    y_train = to_tensor(y_train, dtype=torch.long, device_=x_train.device)
    with seeded(seed):
        clf = DigitClassifier(x_train.shape[1], levels, n_classes).to(x_train.device)
        optim = torch.optim.Adam(clf.parameters(), lr=1e-3, weight_decay=1e-4)
        inputs = clf._inputs(x_train)
        best, best_state = -1.0, None
        n = len(x_train)
        for _ in range(check_int(epochs, "epochs")):
            clf.train()
            for idx in torch.randperm(n, device=x_train.device).split(64):
                loss = F.cross_entropy(clf(inputs[idx]), y_train[idx])
                optim.zero_grad()
                loss.backward()
                optim.step()
            acc = clf.accuracy(x_val, y_val)
            if acc > best:
                best, best_state = acc, {k: v.clone() for k, v in clf.state_dict().items()}
    if best_state is not None:
        clf.load_state_dict(best_state)
    clf.eval()
    if x_test is not None:
        clf.test_accuracy = clf.accuracy(x_test, y_test)
    return clf


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of feature vectors.

    d² = ||μ_a - μ_b||² + tr(Σ_a + Σ_b - 2 (Σ_a Σ_b)^½)   (FID, Heusel et al. 2017),

    with tr (Σ_a Σ_b)^½ = Σ_i √λ_i, λ the eigenvalues of Σ_a^½ Σ_b Σ_a^½ (symmetric,
    positive semi-definite: no complex square root), in float64.
    """
    a = to_tensor(features_a, dtype=torch.float64, device_="cpu")
    b = to_tensor(features_b, dtype=torch.float64, device_="cpu")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ShapeError(
            f"features must be (n, k) and (m, k) matrices, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    if min(a.shape[0], b.shape[0]) < 2:
        raise ShapeError("each feature set needs at least 2 rows for a covariance")
    check_finite(a, "features_a")
    check_finite(b, "features_b")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    w, v = torch.linalg.eigh(cov_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    middle = root_a @ cov_b @ root_a
    cross = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return float(value.clamp_min(0))


def energy_distance(a: Any, b: Any, *, unbiased: bool = False) -> float:
    """The energy distance between two samples of points in R^d (Székely and Rizzo, 2013):
    the sample-quality score of low-dimensional data (the swiss roll), where no classifier's
    features are needed.

    D²(F, G) = 2 E|X - Y| - E|X - X'| - E|Y - Y'|,   X, X' ~ F and Y, Y' ~ G independent,

    with |·| the Euclidean norm. D² >= 0, and D² = 0 only when F = G; in one dimension it is
    2 ∫ (F(t) - G(t))² dt. Estimated from rows a_1..a_n and b_1..b_m by the V-statistic
    (the mean over all pairs, the zero diagonal of the within-sample terms included:
    non-negative, and V = U + Ū_a / n + Ū_b / m with Ū the within-sample mean distances, so
    that when F = G its expectation is E|X - X'| / n + E|Y - Y'| / m, not 0), or with
    ``unbiased=True`` by the U-statistic U (within-sample means over i ≠ i': unbiased, may be
    slightly negative). Compare samples of equal size, and read a model's score
    against the score of a second sample of the data (its floor). In float64, on the CPU,
    exact pairwise distances (no matrix-product shortcut).

    >>> round(energy_distance(torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])), 6)
    4.5
    """
    x = to_tensor(a, dtype=torch.float64, device_="cpu")
    y = to_tensor(b, dtype=torch.float64, device_="cpu")
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ShapeError(
            f"a and b must be (n, d) and (m, d) matrices, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    low = 2 if unbiased else 1
    if min(x.shape[0], y.shape[0]) < low:
        raise ShapeError(
            f"each sample needs at least {low} row{'s' if low > 1 else ''}"
            f"{' for the U-statistic' if unbiased else ''}, got {x.shape[0]} and {y.shape[0]}"
        )
    check_finite(x, "a")
    check_finite(y, "b")
    n, m = x.shape[0], y.shape[0]
    check_allocation(max(n, m) * max(n, m), torch.float64, "the energy distance's distances")
    mode = "donot_use_mm_for_euclid_dist"
    between = torch.cdist(x, y, compute_mode=mode).mean()
    within_x = torch.cdist(x, x, compute_mode=mode).sum()
    within_y = torch.cdist(y, y, compute_mode=mode).sum()
    if unbiased:
        within_x, within_y = within_x / (n * (n - 1)), within_y / (m * (m - 1))
    else:
        within_x, within_y = within_x / (n * n), within_y / (m * m)
    return float(2 * between - within_x - within_y)


def sample_quality(
    model: Any,
    classifier: DigitClassifier,
    x_reference: Any,
    *,
    n: int = 1000,
    per_class: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Fréchet distance of ``n`` samples to ``x_reference`` in the classifier's features,
    and (for a class-conditional model, ``model.n_classes > 0``) the classifier's
    accuracy on ``per_class`` samples of each class. Keys: ``fd``, ``class_accuracy``
    (NaN for an unconditional model)."""
    n = check_int(n, "n")
    conditional = int(getattr(model, "n_classes", 0) or 0)
    if conditional:
        k = max(1, math.ceil(n / conditional))
        labels = torch.arange(conditional).repeat_interleave(k)[:n]
        samples = model.sample(n, y=labels, seed=seed)
    else:
        samples = model.sample(n, seed=seed)
    fd = frechet_distance(classifier.features(samples), classifier.features(x_reference))
    accuracy = math.nan
    if conditional:
        per_class = check_int(per_class, "per_class")
        labels = torch.arange(conditional).repeat_interleave(per_class)
        draws = model.sample(len(labels), y=labels, seed=seed + 1)
        accuracy = classifier.accuracy(draws, labels)
    return {"fd": fd, "class_accuracy": accuracy}


# --------------------------------------------------------------------------- speed
def samples_per_second(
    model: Any, n: int = 500, *, repeats: int = 3, seed: int = 0, **kwargs: Any
) -> float:
    """n / (median seconds of ``model.sample(n, seed=..., **kwargs)``) over ``repeats`` runs
    (after one warm-up run of at most 8 draws; per-draw labels ``y`` are cut to match)."""
    n = check_int(n, "n")
    warm = min(n, 8)
    warm_kwargs = dict(kwargs)
    y = kwargs.get("y")
    if isinstance(y, torch.Tensor) and y.dim() > 0:
        if y.shape[0] != n:
            raise ShapeError(f"y must hold one label per draw ({n}), got shape {tuple(y.shape)}")
        warm_kwargs["y"] = y[:warm]
    model.sample(warm, seed=seed, **warm_kwargs)
    times = []
    for r in range(check_int(repeats, "repeats")):
        start = time.perf_counter()
        model.sample(n, seed=seed + r, **kwargs)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def plain_torch_trainer(
    parameters: Iterable[torch.Tensor],
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    batch_size: int,
    *,
    lr: float = 1e-3,
    device: torch.device | str | None = None,
) -> Callable[[int], list[float]]:
    """A plain-PyTorch training loop: ``run(epochs)`` does ceil(n / batch_size) steps per
    epoch, each on ``batch_size`` random rows (the draw of Pyro's subsampled plate),
    ``loss_fn(idx)`` -> scalar loss, backward, ``torch.optim.Adam`` step, and reads the
    loss (as :func:`~pyrobn.infer.fit_svi` does). The reference of "time per epoch"."""
    params = list(parameters)
    check_positive(lr, "lr")
    optim = torch.optim.Adam(params, lr=lr)
    n, batch_size = check_int(n, "n"), check_int(batch_size, "batch_size")
    per_epoch = math.ceil(n / batch_size)
    device = torch.device(device) if device is not None else params[0].device

    def run(epochs: int) -> list[float]:
        losses = []
        for _ in range(epochs * per_epoch):
            idx = torch.randperm(n, device=device)[:batch_size]
            loss = loss_fn(idx)
            optim.zero_grad()
            loss.backward()
            optim.step()
            losses.append(float(loss.detach()))
        return losses

    return run


@dataclass
class EpochTiming:
    """Seconds per epoch of each contender (median over repeats) and the ratio to the base."""

    seconds: dict[str, float]
    runs: dict[str, list[float]]
    base: str

    def ratio(self, name: str) -> float:
        return self.seconds[name] / self.seconds[self.base]


def compare_epoch_times(
    contenders: Mapping[str, Callable[[int], Any]],
    *,
    epochs: int = 5,
    repeats: int = 3,
    base: str | None = None,
) -> EpochTiming:
    """Time ``run(epochs)`` of each contender, interleaved (so that a change of machine
    load hits all of them), after one warm-up epoch each; the median seconds per epoch
    over ``repeats``. ``base`` (default the first) is the denominator of :meth:`ratio`."""
    if not contenders:
        raise ConfigurationError("contenders is empty")
    epochs, repeats = check_int(epochs, "epochs"), check_int(repeats, "repeats")
    base = base if base is not None else next(iter(contenders))
    if base not in contenders:
        raise ConfigurationError(f"base {base!r} is not a contender: {list(contenders)}")
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for run in contenders.values():
        run(1)
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run(epochs)
            runs[name].append((time.perf_counter() - start) / epochs)
    seconds = {name: statistics.median(values) for name, values in runs.items()}
    return EpochTiming(seconds, runs, base)


# --------------------------------------------------------------------------- one row
@dataclass
class BenchmarkRow:
    """One model's figures on the benchmark (one seed)."""

    name: str
    nll: float
    nll_stderr: float
    nll_kind: str
    bits_per_dim: float
    fd: float
    class_accuracy: float
    samples_per_second: float
    seconds_per_epoch: float = math.nan
    reference_seconds_per_epoch: float = math.nan
    seed: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def epoch_ratio(self) -> float:
        return self.seconds_per_epoch / self.reference_seconds_per_epoch

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"epoch_ratio": self.epoch_ratio}


def evaluate(
    name: str,
    model: Any,
    x_test: Any,
    classifier: DigitClassifier,
    *,
    y_test: Any = None,
    n_samples: int = 1000,
    speed_samples: int = 500,
    seed: int = 0,
    timing: tuple[float, float] | None = None,
) -> BenchmarkRow:
    """Every figure of the benchmark for one fitted ``model`` (the harness protocol).

    The NLL is unconditional unless the model is class-conditional (then log p(x | y)
    with the true labels ``y_test``). ``timing`` = (seconds per epoch, plain-PyTorch
    seconds per epoch) from :func:`compare_epoch_times`.
    """
    conditional = int(getattr(model, "n_classes", 0) or 0)
    score = nll_score(model, x_test, y_test if conditional else None, seed=seed)
    quality = sample_quality(model, classifier, x_test, n=n_samples, seed=seed)
    speed_kwargs: dict[str, Any] = {}
    if conditional:
        speed_kwargs["y"] = torch.arange(speed_samples) % conditional
    rate = samples_per_second(model, speed_samples, seed=seed, **speed_kwargs)
    per_epoch, reference = timing if timing is not None else (math.nan, math.nan)
    return BenchmarkRow(
        name, score.nats, score.stderr, score.kind, score.bits_per_dim, quality["fd"],
        quality["class_accuracy"], rate, per_epoch, reference, seed,
    )  # fmt: skip


def summarize(rows: Sequence[BenchmarkRow]) -> dict[str, dict[str, float]]:
    """Per model name: mean and sd over seeds of every numeric figure (``<key>``, ``<key>_sd``)."""
    by_name: dict[str, list[BenchmarkRow]] = {}
    for row in rows:
        by_name.setdefault(row.name, []).append(row)
    out: dict[str, dict[str, float]] = {}
    keys = ("nll", "bits_per_dim", "fd", "class_accuracy", "samples_per_second",
            "seconds_per_epoch", "reference_seconds_per_epoch", "epoch_ratio")  # fmt: skip
    for name, group in by_name.items():
        stats: dict[str, float] = {"seeds": len(group)}
        for key in keys:
            values = torch.tensor([float(getattr(r, key)) for r in group], dtype=torch.float64)
            stats[key] = float(values.mean())
            stats[f"{key}_sd"] = float(values.std()) if len(values) > 1 else math.nan
        stats["nll_kind"] = group[0].nll_kind  # type: ignore[assignment]
        out[name] = stats
    return out


def format_table(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`summarize`'s output."""
    lines = [
        "| model | test NLL (nats/image) | bits/dim | FD | class acc. | samples/s | s/epoch "
        "| vs PyTorch |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def pm(stats: Mapping[str, Any], key: str, fmt: str) -> str:
        mean, sd = stats[key], stats.get(f"{key}_sd", math.nan)
        if isinstance(mean, float) and math.isnan(mean):
            return "–"
        return format(mean, fmt) + ("" if math.isnan(sd) else f" ± {format(sd, fmt)}")

    for name, s in summary.items():
        kind = {"exact": "exact", "bound": "bound", "none": "none"}[s["nll_kind"]]
        nll = "none" if kind == "none" else f"{pm(s, 'nll', '.2f')} ({kind})"
        lines.append(
            f"| {name} | {nll} | {pm(s, 'bits_per_dim', '.3f')} | {pm(s, 'fd', '.2f')} | "
            f"{pm(s, 'class_accuracy', '.3f')} | {pm(s, 'samples_per_second', '.0f')} | "
            f"{pm(s, 'seconds_per_epoch', '.3f')} | {pm(s, 'epoch_ratio', '.2f')}x |"
        )
    return "\n".join(lines)


__all__ = [
    "NLL_KINDS",
    "Adapter",
    "BenchmarkRow",
    "DigitClassifier",
    "EpochTiming",
    "GenerativeModel",
    "NLLScore",
    "bits_per_dim",
    "compare_epoch_times",
    "energy_distance",
    "evaluate",
    "format_table",
    "frechet_distance",
    "nll_score",
    "plain_torch_trainer",
    "sample_quality",
    "samples_per_second",
    "summarize",
    "train_classifier",
]
