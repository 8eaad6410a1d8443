# %% [markdown]
# # 02 · From the empirical distribution to kernel density estimation (notes 2.2.1)
#
# The empirical distribution p_D(x) = (1/K) Σ_k δ_{x^k}(x) (eq. 13) only puts mass on the
# training points. KDE smooths it with a kernel centred on each point (eq. 14):
#
# KDE(x) = (1/K) Σ_k N(x | x^k, h² I),
#
# a Gaussian mixture with a uniform prior and one component per sample. The bandwidth h
# is the one hyper-parameter: too small over-fits (spikes on the data), too large
# under-fits (one blurred bump). `pyrobn.KDE` offers Scott's and Silverman's rules, which
# scale with the data's spread, and "cv" (held-out likelihood). The last section measures
# the notes' warning of 2.2.2: KDE suffers from the curse of dimensionality.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import pyrobn
from pyrobn import mle
from pyrobn.datasets import course_mixture
from pyrobn.density import EmpiricalDistribution
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "02_kde",
    figures=[
        "figura6_kde_1d",
        "figura7_kde_2d",
        "kde_as_a_mixture",
        "bandwidth_fit",
        "heldout_vs_bandwidth",
        "curse_of_dimensionality",
    ],
    title="Empirical distribution and KDE",
)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Figura 6: five points in [0, 1], Gaussian kernel with h = 0.1 (the notes' `kde` default)

# %%
data_1d = torch.as_tensor(rng.random(5))
kde = pyrobn.KDE(data_1d, bandwidth=0.1)
x = torch.linspace(0, 1, 400, dtype=torch.float64)
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(x, kde.log_prob(x).exp(), label="KDE (h = 0.1)")
ax.plot(data_1d, np.zeros(5), "o", label="datos")
ax.set(xlabel="x", ylabel="p(x)", title="Figura 6: KDE en D = 1")
ax.legend()
tut.save(fig, "figura6_kde_1d")
emp = EmpiricalDistribution(data_1d)
tut.record("empirical_entropy_5_points", float(emp.entropy()), fmt=".4f")  # log 5
tut.check_close(
    "five distinct points: the empirical entropy is log 5", emp.entropy(), math.log(5), atol=1e-12
)
mass = float(
    kde.log_prob(torch.linspace(-2, 3, 20001, dtype=torch.float64)).exp().sum() * 5 / 20000
)
tut.record("kde_total_mass", mass, fmt=".6f")
tut.check_close("the KDE integrates to 1 (eq. 14 is a density)", mass, 1.0, atol=1e-6)

# %% [markdown]
# ## Figura 7: five points in the unit square; the RBF kernel has circular level sets
#
# The notes' code for Figura 7 uses `bandwidth=0.2` (its `kde` default in 2-D); so does
# this figure.

# %%
data_2d = torch.as_tensor(rng.random((5, 2)))
kde2 = pyrobn.KDE(data_2d, bandwidth=0.2)
g = torch.linspace(0, 1, 150, dtype=torch.float64)
gx, gy = torch.meshgrid(g, g, indexing="xy")
density = kde2.log_prob(torch.stack([gx.ravel(), gy.ravel()], -1)).exp().view(150, 150)
fig, ax = plt.subplots(figsize=(6, 5))
im = ax.imshow(density, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
ax.plot(data_2d[:, 0], data_2d[:, 1], "wo")
fig.colorbar(im, ax=ax, label="p(x)")
ax.set(xlabel="x1", ylabel="x2", title="Figura 7: KDE en D = 2 (h = 0.2)")
tut.save(fig, "figura7_kde_2d")
# the RBF kernel's level sets are circles: the density at equal distances from a lone
# point is equal in every direction
centre = data_2d[0]
angles = torch.linspace(0, 2 * math.pi, 8, dtype=torch.float64)
ring = centre + 0.05 * torch.stack([angles.cos(), angles.sin()], -1)
single = pyrobn.KDE(centre.unsqueeze(0), bandwidth=0.2)
spread = float(single.log_prob(ring).std())
tut.check(
    "the RBF kernel's level sets are circles",
    spread < 1e-12,
    f"sd of log p on a circle around a point = {spread:.1e}",
)

# %% [markdown]
# ## KDE is a mixture with a uniform prior (the notes, after eq. 14)
#
# As a Bayesian network KDE is Figura 2's mixture with one component per sample and a fixed
# uniform prior: k ~ U{1..K}, x | k ~ N(x^k, h² I). `KDE.graph()` draws it, and
# `GaussianMixture` with those means, equal weights and scales h gives the same density.

# %%
as_mixture = pyrobn.GaussianMixture(5, dim=2, means=data_2d, scales=[[0.2, 0.2]] * 5)
grid_points = torch.stack([gx.ravel(), gy.ravel()], -1)
gap = float((as_mixture.log_prob(grid_points) - kde2.log_prob(grid_points)).abs().max())
tut.record("kde_vs_uniform_mixture_max_abs_diff", gap, fmt=".1e")
tut.check(
    "KDE is the mixture with uniform weights and scale h",
    gap < 1e-10,
    f"max |log p difference| = {gap:.1e}",
)
fig, ax = plt.subplots(figsize=(4, 3))
kde2.graph().draw(ax=ax)
tut.save(fig, "kde_as_a_mixture")

# %% [markdown]
# ## Over- and under-fitting: the bandwidth on the notes' mixture (2.4.4)
#
# Train on 500 samples, score on 5000 held-out ones: the mean held-out log-likelihood is
# minus the cross-entropy CE(p_data, KDE) (eq. 45), so the best h minimises it.

# %%
train = course_mixture(tut.steps(500, 200), seed=0, device="cpu")
test = course_mixture(tut.steps(5000, 1000), seed=1, device="cpu")
grid = torch.linspace(-6, 10, 600, dtype=torch.float64)
rules = {rule: pyrobn.KDE(train, rule) for rule in ("scott", "silverman", "cv")}
fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
for ax, (label, h) in zip(
    axes,
    [
        ("demasiado pequeño", 0.05),
        ("validación cruzada", rules["cv"].bandwidth),
        ("demasiado grande", 3.0),
    ],
):
    model = pyrobn.KDE(train, h)
    ax.hist(train.numpy(), bins=60, density=True, alpha=0.3)
    ax.plot(grid, model.log_prob(grid).exp())
    ax.set(title=f"h = {h:.3f} ({label})", xlabel="x")
axes[0].set_ylabel("densidad")
tut.save(fig, "bandwidth_fit")

hs = torch.logspace(-1.7, 0.7, 40, dtype=torch.float64)
heldout = [pyrobn.KDE(train, float(h)).score(test) for h in hs]
fig, ax = plt.subplots(figsize=(7, 4))
ax.semilogx(hs, heldout, label="log-verosimilitud media (test)")
for rule, model in rules.items():
    ax.axvline(
        model.bandwidth,
        ls="--",
        color={"scott": "C1", "silverman": "C2", "cv": "C3"}[rule],
        label=rule,
    )
ax.set(
    xlabel="h",
    ylabel="(1/M) Σ log KDE(x)",
    title="sub-ajuste a la derecha, sobre-ajuste a la izquierda",
)
ax.legend()
tut.save(fig, "heldout_vs_bandwidth")
for rule, model in rules.items():
    tut.record(f"bandwidth_{rule}", model.bandwidth, fmt=".4f")
    tut.record(f"heldout_loglik_{rule}", model.score(test), fmt=".4f")
best_h = float(hs[int(np.argmax(heldout))])
tut.record("best_grid_bandwidth", best_h, fmt=".4f")
# over-fitting and under-fitting both cost held-out likelihood: the curve has an interior
# maximum, and cross-validation on the training set lands near it
tut.check(
    "too small and too large h both lose held-out likelihood",
    max(heldout) > heldout[0] and max(heldout) > heldout[-1],
    f"h = {float(hs[0]):.3f}: {heldout[0]:.4f}, best: {max(heldout):.4f}, "
    f"h = {float(hs[-1]):.2f}: {heldout[-1]:.4f}",
)
tut.check(
    "cross-validation lands within a factor 2 of the best h",
    0.5 < rules["cv"].bandwidth / best_h < 2.0,
    f"cv h = {rules['cv'].bandwidth:.4f}, best on the grid {best_h:.4f}",
)

# %% [markdown]
# ## The rules of thumb scale with the data
#
# Multiply the data by 20: every rule multiplies h by 20 (scikit-learn's string bandwidths
# do not, its issues #25623 and #26658), so the estimate is the same shape in new units.

# %%
ratios = {rule: pyrobn.KDE(20 * train, rule).bandwidth / rules[rule].bandwidth for rule in rules}
tut.record("scott_ratio_at_scale_20", ratios["scott"], fmt=".6f")
tut.record("bandwidth_ratios_at_scale_20", ratios)
for rule, ratio in ratios.items():
    tut.check_close(f"{rule}: h scales by 20 with the data", ratio, 20.0, rtol=1e-9)

# %% [markdown]
# ## The curse of dimensionality (2.2.2)
#
# "Si bien KDE puede funcionar bien en baja dimensión, sufre de la maldición de la
# dimensionalidad." Measure it: data from the standard Gaussian in D dimensions, the same
# number of training points in every D, and the held-out gap
#
# E_p[log p(x)] − E_p[log KDE(x)] = KL(p ‖ KDE)  (eq. 46–47, in nats),
#
# estimated on held-out points where the true density p is known. The bandwidth is chosen
# by held-out likelihood ("cv"), the best KDE can do; the Gaussian fitted by maximum
# likelihood (`mle.gaussian`, the lecture's "modelo simple") is the parametric reference.
# A KDE needs exponentially many points as D grows: with a fixed budget its gap explodes,
# while the parametric model (which happens to be right here) barely moves.

# %%
dims = list(range(1, 21)) if not tut.smoke else [1, 2, 5, 10, 20]
n_train, n_test = tut.steps(2000, 500), tut.steps(5000, 1000)
gen = torch.Generator().manual_seed(1)
gaps = {"KDE (h por validación cruzada)": [], "KDE (Scott)": [], "gaussiana (MLE)": []}
for d in dims:
    xtr = torch.randn(n_train, d, generator=gen, dtype=torch.float64)
    xte = torch.randn(n_test, d, generator=gen, dtype=torch.float64)
    truth = float(torch.distributions.Normal(0.0, 1.0).log_prob(xte).sum(-1).mean())
    mu, cov = mle.gaussian(xtr)
    fitted = float(torch.distributions.MultivariateNormal(mu, cov).log_prob(xte).mean())
    gaps["KDE (h por validación cruzada)"].append(
        truth - pyrobn.KDE(xtr, "cv", cv_points=500).score(xte)
    )
    gaps["KDE (Scott)"].append(truth - pyrobn.KDE(xtr, "scott").score(xte))
    gaps["gaussiana (MLE)"].append(truth - fitted)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for label, values in gaps.items():
    axes[0].plot(dims, values, "o-", label=label)
    axes[1].plot(dims, np.array(values) / np.array(dims), "o-", label=label)
axes[0].set(xlabel="D", ylabel="KL(p ‖ modelo) (nats)", title="brecha en test")
axes[1].set(xlabel="D", ylabel="nats por dimensión", title="brecha por dimensión")
for ax in axes:
    ax.legend()
    ax.grid(alpha=0.3)
tut.save(fig, "curse_of_dimensionality")
kde_gap = gaps["KDE (h por validación cruzada)"]
tut.record("kde_gap_nats_by_dimension", {d: round(float(v), 4) for d, v in zip(dims, kde_gap)})
tut.record(
    "gaussian_mle_gap_nats_by_dimension",
    {d: round(float(v), 4) for d, v in zip(dims, gaps["gaussiana (MLE)"])},
)
i1, i5, i20 = dims.index(1), dims.index(5), dims.index(20)
shown = f"gap at D = 1, 5, 20: {kde_gap[i1]:.4f}, {kde_gap[i5]:.4f}, {kde_gap[i20]:.4f}"
tut.check(
    "the KDE gap grows faster than the dimension",
    kde_gap[i20] / 20 > kde_gap[i5] / 5 > kde_gap[i1],
    shown,
)
tut.check("the KDE gap explodes: under 0.05 nats in 1-D, over 1 in 20-D",
          kde_gap[i20] > 1.0 and kde_gap[i1] < 0.05, shown)  # fmt: skip
mle_gap = gaps["gaussiana (MLE)"]
tut.check(
    "from D = 5 on, the parametric Gaussian beats the KDE",
    all(g < k for g, k, d in zip(mle_gap, kde_gap, dims) if d >= 5),
    f"Gaussian gap at D = 5, 20: {mle_gap[i5]:.4f}, {mle_gap[i20]:.4f}",
)
tut.check(
    "the parametric model barely moves: under 0.5 nats at D = 20",
    mle_gap[i20] < 0.5,
    f"Gaussian gap at D = 20: {mle_gap[i20]:.4f} (KDE {kde_gap[i20]:.4f})",
)
