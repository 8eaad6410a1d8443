# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 00 · Maximum likelihood in closed form and by SVI
#
# Notes, section 2.4.1. For i.i.d. data the maximum-likelihood estimate (MLE) maximises
# log p_θ(D) = Σ_k log p_θ(x^k). Two cases have a closed form:
#
# * Gaussian mean with known variance (eq. 32–34): μ̂ = (1/K) Σ_k x^k;
# * Bernoulli parameter (eq. 35–37): r̂ = (1/K) Σ_k x^k, the fraction of ones.
#
# A flat prior turns MAP into MLE (eq. 28), so an `AutoDelta` guide fitted by
# `pyrobn.infer.fit_svi` to a model with an improper flat prior must land on the same
# numbers. This tutorial checks that, and shows the log-likelihood surfaces. The last
# section is the lecture's "modelo simple": a multivariate Gaussian N(x | μ, Σ) with a full
# covariance, θ = {μ, Σ}, in closed form and by SVI, and why it is not enough (unimodal).

# %%
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoDelta, init_to_value

import pyrobn
from pyrobn import mle
from pyrobn.datasets import gaussian_blobs
from pyrobn.infer import fit_svi
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "00_mle_basics",
    figures=["gaussian_mean", "bernoulli", "full_covariance_gaussian"],
    title="Closed-form MLE against SVI with a flat prior",
)
pyrobn.set_seed(0)
device = pyrobn.device()
K = tut.steps(full=500, smoke=200)
steps = tut.steps(full=1500, smoke=400)


def flat_prior_map(model, data: torch.Tensor, site: str, init: float):
    """MAP of ``site`` through an AutoDelta guide and fit_svi; with a flat prior, the MLE.

    Adam's step size decays tenfold over the run, so the last iterates settle on the optimum.
    Returns the estimate and the fit's history.
    """
    guide = AutoDelta(model, init_loc_fn=init_to_value(values={site: data.new_tensor(init)}))
    history = fit_svi(
        model,
        guide,
        data,
        steps=steps,
        optim=pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)}),
        progress=False,
    )
    return guide.median()[site].detach(), history


# %% [markdown]
# ## Gaussian mean (eq. 34)
# Data: K draws of N(μ = 1.7, σ² = 1.5²), σ known.

# %%
sigma = 1.5
x = (1.7 + sigma * torch.randn(K, dtype=torch.float64)).to(device)
mu_closed = mle.gaussian_mean(x)


def gaussian_model(data: torch.Tensor) -> None:
    """x^k ~ N(μ, σ²) with an improper flat prior on μ (MAP = MLE, eq. 28)."""
    mu = pyro.sample("mu", dist.ImproperUniform(constraints.real, (), ()))
    with pyro.plate("data", len(data)):
        pyro.sample("x", dist.Normal(mu, sigma), obs=data)


mu_svi, history = flat_prior_map(gaussian_model, x, "mu", init=0.0)
tut.record("gaussian_mean_closed_form", float(mu_closed), fmt=".6f")
tut.record("gaussian_mean_svi", float(mu_svi), fmt=".6f")
tut.record("gaussian_mean_abs_error", abs(float(mu_svi - mu_closed)), fmt=".2e")
tut.check(
    "AutoDelta with a flat prior lands on the closed-form mean",
    abs(float(mu_svi - mu_closed)) < 1e-6,
    f"SVI {float(mu_svi):.6f} vs closed form {float(mu_closed):.6f}",
)

# %%
grid = torch.linspace(float(mu_closed) - 1.5, float(mu_closed) + 1.5, 301, dtype=torch.float64)
loglik = dist.Normal(grid.unsqueeze(-1), sigma).log_prob(x.cpu()).sum(-1)
best_on_grid = float(grid[loglik.argmax()])
tut.check(
    "the sample mean maximises log p(D | mu) (eq. 34)",
    abs(best_on_grid - float(mu_closed)) <= float(grid[1] - grid[0]),
    f"grid argmax {best_on_grid:.4f} vs closed form {float(mu_closed):.4f}",
)
min_loss = -float(dist.Normal(mu_closed, sigma).log_prob(x).sum())
tut.check_close(
    "the last SVI loss is the minimum -log p(D | mu)", history.losses[-1], min_loss, rtol=1e-6
)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
axes[0].plot(grid, loglik, color="#1f5fa8")
axes[0].axvline(float(mu_closed), color="#d1495b", label="closed form (eq. 34)")
axes[0].axvline(float(mu_svi), color="#2e8b57", ls="--", label="AutoDelta + flat prior")
axes[0].set(xlabel="μ", ylabel="log p(D | μ)", title="Gaussian mean")
axes[0].legend()
axes[1].plot(range(1, len(history.losses) + 1), history.losses, color="#1f5fa8")
axes[1].axhline(-float(loglik.max()), color="#d1495b", ls=":", label="minimum (closed form)")
axes[1].set(xlabel="SVI step", ylabel="−log p(D | μ)", xscale="log", title="fit_svi loss")
axes[1].legend()
tut.save(fig, "gaussian_mean")

# %% [markdown]
# ## Bernoulli parameter (eq. 37)
# Data: K coin flips with r = 0.3; the MLE is the fraction of ones.

# %%
flips = torch.bernoulli(torch.full((K,), 0.3, dtype=torch.float64)).to(device)
r_closed = mle.bernoulli(flips)


def bernoulli_model(data: torch.Tensor) -> None:
    """x^k ~ Bernoulli(r) with a flat prior on r in [0, 1]."""
    r = pyro.sample("r", dist.ImproperUniform(constraints.unit_interval, (), ()))
    with pyro.plate("data", len(data)):
        pyro.sample("x", dist.Bernoulli(r), obs=data)


r_svi, history = flat_prior_map(bernoulli_model, flips, "r", init=0.5)
tut.record("bernoulli_closed_form", float(r_closed), fmt=".6f")
tut.record("bernoulli_svi", float(r_svi), fmt=".6f")
tut.record("bernoulli_abs_error", abs(float(r_svi - r_closed)), fmt=".2e")
tut.check(
    "AutoDelta with a flat prior lands on the fraction of ones",
    abs(float(r_svi - r_closed)) < 1e-6,
    f"SVI {float(r_svi):.6f} vs closed form {float(r_closed):.6f}",
)

# %%
r_grid = torch.linspace(0.01, 0.99, 197, dtype=torch.float64)
ones = float(flips.sum())
loglik = ones * r_grid.log() + (K - ones) * (1 - r_grid).log()  # eq. 35
best_on_grid = float(r_grid[loglik.argmax()])
tut.check(
    "the fraction of ones maximises log p(D | r) (eq. 37)",
    abs(best_on_grid - float(r_closed)) <= float(r_grid[1] - r_grid[0]),
    f"grid argmax {best_on_grid:.4f} vs closed form {float(r_closed):.4f}",
)
fig, ax = plt.subplots(figsize=(5, 3.6))
ax.plot(r_grid, loglik, color="#1f5fa8")
ax.axvline(float(r_closed), color="#d1495b", label="closed form (eq. 37)")
ax.axvline(float(r_svi), color="#2e8b57", ls="--", label="AutoDelta + flat prior")
ax.set(
    xlabel="r", ylabel="log p(D | r)", title="Bernoulli parameter", ylim=(loglik.max() - 60, None)
)
ax.legend()
tut.save(fig, "bernoulli")

# %% [markdown]
# Both SVI estimates agree with the closed forms to the optimiser's tolerance: with a
# flat prior, MAP through `AutoDelta` is maximum likelihood.
#
# ## The lecture's "modelo simple": x ~ N(x | μ, Σ), θ = {μ, Σ}
#
# The MLE is the sample mean and the (biased) sample covariance,
# Σ̂ = (1/K) Σ_k (x^k − μ̂)(x^k − μ̂)ᵀ (`mle.gaussian`). SVI with flat priors on μ and on the
# Cholesky factor L of Σ = L Lᵀ lands on it. The lecture's caveat follows: the model is
# unimodal, so on three blobs a mixture (2.1.3.1) has a far higher held-out likelihood.

# %%
blobs = torch.as_tensor(gaussian_blobs(tut.steps(2000, 500), seed=0)).to(device)
mu_full, cov_full = mle.gaussian(blobs)


def full_gaussian_model(data: torch.Tensor) -> None:
    """x^k ~ N(μ, L Lᵀ) with flat priors on μ and on the Cholesky factor L."""
    mu = pyro.sample("mean", dist.ImproperUniform(constraints.real_vector, (), (2,)))
    tril = pyro.sample("tril", dist.ImproperUniform(constraints.lower_cholesky, (), (2, 2)))
    with pyro.plate("data", len(data)):
        pyro.sample("x", dist.MultivariateNormal(mu, scale_tril=tril), obs=data)


# site names of their own: AutoDelta keeps its parameters in Pyro's param store by site
start = {"mean": blobs.new_zeros(2), "tril": torch.eye(2, dtype=blobs.dtype, device=device)}
guide = AutoDelta(full_gaussian_model, init_loc_fn=init_to_value(values=start))
fit_svi(
    full_gaussian_model,
    guide,
    blobs,
    steps=steps,
    optim=pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / steps)}),
    progress=False,
)
point = guide.median(blobs)
cov_svi = point["tril"] @ point["tril"].T
tut.record("full_gaussian_mean_closed_form", mu_full)
tut.record("full_gaussian_covariance_closed_form", cov_full)
gap = max(float((point["mean"] - mu_full).abs().max()), float((cov_svi - cov_full).abs().max()))
tut.record("full_gaussian_svi_max_abs_error", gap, fmt=".2e")
centred = blobs - blobs.mean(0)
tut.check_close(
    "the closed-form covariance is the biased sample covariance",
    cov_full,
    centred.T @ centred / len(blobs),
    atol=1e-12,
)
tut.check("SVI lands on the closed-form mean and covariance", gap < 1e-6, f"max |diff| = {gap:.2e}")
loglik_closed = float(dist.MultivariateNormal(mu_full, cov_full).log_prob(blobs).sum())
loglik_svi = float(dist.MultivariateNormal(point["mean"], cov_svi).log_prob(blobs).sum())
tut.check(
    "no SVI point has a higher likelihood than the closed form",
    loglik_closed >= loglik_svi - 1e-9 * abs(loglik_closed),
    f"log p(D): closed form {loglik_closed:.4f}, SVI {loglik_svi:.4f}",
)

test_blobs = torch.as_tensor(gaussian_blobs(2000, seed=1)).to(device)
single = float(dist.MultivariateNormal(mu_full, cov_full).log_prob(test_blobs).mean())
mixture = pyrobn.GaussianMixture(3, dim=2, learn="all").fit(blobs, method="em", restarts=3)
tut.record("blobs_heldout_loglik_single_gaussian", single, fmt=".4f")
tut.record("blobs_heldout_loglik_3_component_mixture", mixture.score(test_blobs), fmt=".4f")
tut.check(  # unimodal: "necesitamos modelos más expresivos"
    "a 3-component mixture beats the single Gaussian by 0.3 nats on held-out blobs",
    mixture.score(test_blobs) > single + 0.3,
    f"held-out mean log-likelihood {mixture.score(test_blobs):.4f} vs {single:.4f}",
)

fig, ax = plt.subplots(figsize=(6, 5))
b = blobs.cpu().numpy()
ax.plot(b[:, 0], b[:, 1], ".", ms=3, alpha=0.4, color="grey", label="datos (tres gaussianas)")
angles = torch.linspace(0, 2 * torch.pi, 200, dtype=torch.float64)
circle = torch.stack([angles.cos(), angles.sin()], -1)
for k, (m, c) in enumerate([(mu_full, cov_full), *zip(mixture.means, mixture.covariances)]):
    ellipse = (m.cpu() + 2 * circle @ torch.linalg.cholesky(c.cpu()).T).numpy()
    style = (
        dict(color="#d1495b", lw=2, label="N(μ̂, Σ̂) (2σ)")
        if k == 0
        else dict(color="#2e8b57", ls="--", label="mezcla, K = 3" if k == 1 else None)
    )
    ax.plot(ellipse[:, 0], ellipse[:, 1], **style)
ax.set(xlabel="x₁", ylabel="x₂", title="modelo simple: una gaussiana con Σ completa")
ax.legend()
tut.save(fig, "full_covariance_gaussian")
