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
# numbers. This tutorial checks that, and shows the log-likelihood surfaces.

# %%
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoDelta, init_to_value

import pyrobn
from pyrobn import mle
from pyrobn.infer import fit_svi
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "00_mle_basics",
    figures=["gaussian_mean", "bernoulli"],
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

# %%
grid = torch.linspace(float(mu_closed) - 1.5, float(mu_closed) + 1.5, 301, dtype=torch.float64)
loglik = dist.Normal(grid.unsqueeze(-1), sigma).log_prob(x.cpu()).sum(-1)
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

# %%
r_grid = torch.linspace(0.01, 0.99, 197, dtype=torch.float64)
ones = float(flips.sum())
loglik = ones * r_grid.log() + (K - ones) * (1 - r_grid).log()  # eq. 35
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
