# %% [markdown]
# # 04 · Mixture density networks (lecture: "Red de Mezcla de Densidades (MDN)")
#
# A regression network predicts one value per input; when the inverse problem is
# multi-valued, the mean of the branches is not on any of them. The MDN lets the network
# output a whole Gaussian mixture over the target:
#
# p(t | x) = Σ_k π_k(x) N(t | μ_k(x), Σ_k(x)),
#
# a Bayesian network z | x ~ Categorical(π(x)), t | x, z ~ N(μ_z(x), Σ_z(x)) whose
# conditional tables are a neural net. In `pyrobn.MixtureDensityNetwork` z is enumerated
# exactly ("funciona porque podemos sumar sobre z"), so training with `fit_svi` maximises
# the exact likelihood. Σ_k(x) is diagonal by default, or full (`covariance="full"`,
# through a Cholesky factor the network outputs) as on the lecture's slide. Conditional
# models take the condition first: `fit(x, t)`, `log_prob(x, t)`, `nll(x, t)`.
#
# The classic inverse problem: t ~ U(0, 1), x = t + 0.3 sin(2πt) + noise; predict t from x.
# For x near 0.5 there are three branches.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import pyrobn
from pyrobn.datasets import inverse_sine
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "04_mdn",
    figures=["mdn_dag", "data_and_samples", "mixture_parameters", "training", "full_covariance"],
    title="Mixture density networks",
)


def polynomial_gaussian_nll(x_train, t_train, x_test, t_test, degree: int = 5) -> float:
    """Held-out mean NLL of t | x ~ N(poly(x), s^2) fitted by least squares (s^2 the mean
    squared training residual): the classic single-Gaussian regressor."""
    xs, ts = x_train.numpy().ravel(), t_train.numpy().ravel()
    poly = np.polynomial.Polynomial.fit(xs, ts, degree)
    var = float(np.mean((ts - poly(xs)) ** 2))
    resid = t_test.numpy().ravel() - poly(x_test.numpy().ravel())
    return float(np.mean(0.5 * np.log(2 * math.pi * var) + 0.5 * resid**2 / var))


x, t = inverse_sine(tut.steps(2000, 300), seed=0, device="cpu")
x_test, t_test = inverse_sine(2000, seed=1, device="cpu")
steps = tut.steps(3000, 120)

# %% [markdown]
# ## Three components against the best single Gaussian
#
# The single-Gaussian baselines: the same network with K = 1 (a heteroscedastic
# Gaussian regressor N(t | μ(x), σ²(x))) and homoscedastic polynomial regressors of
# degree 1–7 fitted by least squares; the margin is taken against the best of them.

# %%
mdn = pyrobn.MixtureDensityNetwork(1, 1, n_components=3, hidden=(32, 32), seed=0)
hist3 = mdn.fit(x, t, steps=steps, lr=1e-2).fit_result_.history
single = pyrobn.MixtureDensityNetwork(1, 1, n_components=1, hidden=(32, 32), seed=0)
hist1 = single.fit(x, t, steps=steps, lr=1e-2).fit_result_.history
poly = {d: polynomial_gaussian_nll(x, t, x_test, t_test, d) for d in range(1, 8)}
nll3, nll_k1 = mdn.nll(x=x_test, t=t_test), single.nll(x=x_test, t=t_test)
nll1 = min(nll_k1, *poly.values())
tut.record("heldout_nll_mdn_k3", nll3, fmt=".4f")
tut.record("heldout_nll_single_gaussian_net", nll_k1, fmt=".4f")
tut.record("heldout_nll_best_polynomial_gaussian", min(poly.values()), fmt=".4f")
tut.record("heldout_nll_best_single_gaussian", nll1, fmt=".4f")
tut.record("margin_nats_per_point", nll1 - nll3, fmt=".4f")
margin = 0.5 if not tut.smoke else 0.2  # 120 smoke steps leave the MDN short of its best
tut.check(
    f"three components beat the best single Gaussian by {margin} nats per point",
    nll1 - nll3 > margin,
    f"held-out NLL {nll3:.4f} vs {nll1:.4f}",
)

fig, ax = plt.subplots(figsize=(4, 3.5))
mdn.plot_graph(ax=ax)
tut.save(fig, "mdn_dag")

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(hist3.losses, label="MDN, K = 3")
ax.plot(hist1.losses, label="una gaussiana")
ax.set(xlabel="paso", ylabel="-(1/N) log p(t | x)", title="entrenamiento (fit_svi, TraceEnum_ELBO)")
ax.legend()
tut.save(fig, "training")

# %% [markdown]
# ## Samples cover every branch; the mean falls between them

# %%
grid = torch.linspace(float(x.min()), float(x.max()), 300).unsqueeze(-1)
draws = mdn.sample(grid, n_samples=20, seed=0)
fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
for ax, model, name in ((axes[0], mdn, "MDN (K = 3)"), (axes[1], single, "una gaussiana")):
    s = model.sample(grid, n_samples=20, seed=0)
    ax.plot(x, t, ".", ms=2, alpha=0.3, color="grey", label="datos")
    ax.plot(
        grid.repeat(20, 1), s.reshape(-1, 1), ".", ms=2, alpha=0.4, color="C0", label="muestras"
    )
    ax.plot(grid, model.mean(grid), color="C3", label="E[t | x]")
    if model is mdn:
        ax.plot(grid, model.mode(grid), color="C2", ls="--", label="moda")
    ax.set(xlabel="x", title=name)
    ax.legend(markerscale=4)
axes[0].set_ylabel("t")
tut.save(fig, "data_and_samples")
roots_x = 0.5
at_half = mdn.sample(torch.full((1, 1), roots_x), n_samples=4000, seed=1).ravel().numpy()
hist, edges = np.histogram(at_half, bins=40, range=(0, 1))
modes = int(((hist[1:-1] > hist[:-2]) & (hist[1:-1] > hist[2:]) & (hist[1:-1] > 100)).sum())
tut.record("sample_modes_at_x_0.5", modes)
if not tut.smoke:  # 120 smoke steps do not separate the three branches
    tut.check("the samples at x = 0.5 have one mode per branch (3)", modes == 3, f"{modes} modes")

# %% [markdown]
# ## What the network outputs: π_k(x), μ_k(x), σ_k(x)

# %%
pi, mu, sigma = mdn.mixture_parameters(grid)
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for k in range(3):
    axes[0].plot(grid, pi[:, k], label=f"π_{k}")
    axes[1].plot(grid, mu[:, k, 0], label=f"μ_{k}")
    axes[2].plot(grid, sigma[:, k, 0], label=f"σ_{k}")
for ax, title in zip(axes, ["pesos", "medias", "desviaciones"]):
    ax.set(xlabel="x", title=title)
    ax.legend()
tut.save(fig, "mixture_parameters")
tut.record("train_seconds_mdn", hist3.wall_time, fmt=".1f")
tut.record("likelihood_ratio_per_point", math.exp(nll1 - nll3), fmt=".2f")
tut.check_close("the weights pi_k(x) sum to 1", pi.sum(-1), torch.ones(len(grid)), atol=1e-5)
tut.check("every sigma_k(x) is positive", bool((sigma > 0).all()))

# %% [markdown]
# ## Full covariances Σ_k(x) (the lecture's slide)
#
# With a 2-D target whose two coordinates are correlated given x,
# t | x ~ N((x, x), [[0.09, 0.081], [0.081, 0.0898]]) (correlation 0.9), a diagonal
# Σ(x) cannot express the correlation: its best fit pays about −½ log(1 − 0.9²) = 0.83
# nats per point. With `covariance="full"` the network outputs a Cholesky factor L(x)
# (positive diagonal through softplus) and Σ(x) = L(x) L(x)ᵀ.


# %%
def correlated(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xs = torch.rand(n, 1, generator=g) * 2 - 1
    e = torch.randn(n, 2, generator=g)
    return xs, torch.cat([xs + 0.3 * e[:, :1], xs + 0.27 * e[:, :1] + 0.13 * e[:, 1:]], 1)


xc, tc = correlated(tut.steps(1000, 300), 0)
xc_test, tc_test = correlated(2000, 1)
cov = torch.tensor([[0.09, 0.081], [0.081, 0.0898]])
resid = (tc_test - xc_test).double()  # t - (x, x): zero-mean noise
sample_cov = resid.T @ resid / len(resid)
se = ((cov.diagonal().unsqueeze(1) * cov.diagonal() + cov**2) / len(resid)).sqrt()
tut.check(
    "the data's noise has the stated covariance (within 4 standard errors)",
    bool(((sample_cov - cov).abs() < 4 * se).all()),
    f"max |sample - stated| / se = {float(((sample_cov - cov).abs() / se).max()):.2f}",
)
rho = float(cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt())
tut.check_close("the correlation given x is 0.9", rho, 0.9, atol=0.005)
truth = -float(
    torch.distributions.MultivariateNormal(xc_test.expand(-1, 2), cov).log_prob(tc_test).mean()
)
fits = {}
for kind in ("diagonal", "full"):
    model = pyrobn.MixtureDensityNetwork(1, 2, 1, hidden=(8,), covariance=kind, seed=0)
    fits[kind] = model.fit(xc, tc, steps=tut.steps(500, 250), lr=2e-2)
nlls = {kind: m.nll(xc_test, tc_test) for kind, m in fits.items()}
tut.record("correlated_heldout_nll_true", truth, fmt=".4f")
tut.record("correlated_heldout_nll_diagonal", nlls["diagonal"], fmt=".4f")
tut.record("correlated_heldout_nll_full", nlls["full"], fmt=".4f")
tut.check(
    "the full-covariance MDN is within 0.1 nats of the truth",
    nlls["full"] < truth + 0.1,
    f"held-out NLL {nlls['full']:.4f} vs true {truth:.4f}",
)
cost = nlls["diagonal"] - nlls["full"]
tut.record("diagonal_minus_full_nats", cost, fmt=".4f")
tut.check(
    "the diagonal MDN pays about -1/2 log(1 - 0.9^2) = 0.83 nats per point more",
    abs(cost - 0.83) < 0.15,
    f"{cost:.4f} nats per point; -1/2 log(1 - rho^2) = {-0.5 * math.log(1 - rho**2):.4f}",
)
at = torch.zeros(1, 1)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5), sharex=True, sharey=True)
near = (xc_test[:, 0].abs() < 0.05).numpy()
for ax, (kind, model) in zip(axes, fits.items()):
    draws = model.sample(at, n_samples=2000, seed=0)[:, 0]
    ax.plot(tc_test[near, 0], tc_test[near, 1], ".", color="grey", alpha=0.6, label="datos (x ≈ 0)")
    ax.plot(draws[:, 0], draws[:, 1], ".", ms=2, alpha=0.3, label="muestras p(t | x = 0)")
    ax.set(xlabel="t₁", title=f"Σ(x) {'diagonal' if kind == 'diagonal' else 'completa'}")
    ax.legend(markerscale=4)
axes[0].set_ylabel("t₂")
tut.save(fig, "full_covariance")
