# %% [markdown]
# # 04 · Mixture density networks (lecture: "Red de Mezcla de Densidades (MDN)")
#
# A regression network predicts one value per input; when the inverse problem is
# multi-valued, the mean of the branches is not on any of them. The MDN lets the network
# output a whole Gaussian mixture over the target:
#
# p(t | x) = Σ_k π_k(x) N(t | μ_k(x), diag σ_k²(x)),
#
# a Bayesian network z | x ~ Categorical(π(x)), t | x, z ~ N(μ_z(x), σ_z²(x)) whose
# conditional tables are a neural net. In `pyrobn.MixtureDensityNetwork` z is enumerated
# exactly, so training with `fit_svi` maximises the exact likelihood.
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
from pyrobn.models.mdn import polynomial_gaussian_nll
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "04_mdn",
    figures=["data_and_samples", "mixture_parameters", "training"],
    title="Mixture density networks",
)
torch.manual_seed(0)
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
hist3 = mdn.fit(x, t, steps=steps, lr=1e-2)
single = pyrobn.MixtureDensityNetwork(1, 1, n_components=1, hidden=(32, 32), seed=0)
hist1 = single.fit(x, t, steps=steps, lr=1e-2)
poly = {d: polynomial_gaussian_nll(x, t, x_test, t_test, d) for d in range(1, 8)}
nll3, nll_k1 = mdn.nll(t_test, x_test), single.nll(t_test, x_test)
nll1 = min(nll_k1, *poly.values())
tut.record("heldout_nll_mdn_k3", nll3, fmt=".4f")
tut.record("heldout_nll_single_gaussian_net", nll_k1, fmt=".4f")
tut.record("heldout_nll_best_polynomial_gaussian", min(poly.values()), fmt=".4f")
tut.record("heldout_nll_best_single_gaussian", nll1, fmt=".4f")
tut.record("margin_nats_per_point", nll1 - nll3, fmt=".4f")

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
tut.record(
    "sample_modes_at_x_0.5",
    int(((hist[1:-1] > hist[:-2]) & (hist[1:-1] > hist[2:]) & (hist[1:-1] > 100)).sum()),
)

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
print(
    f"held-out NLL: MDN {nll3:.3f}, single Gaussian {nll1:.3f}: "
    f"{math.exp(nll1 - nll3):.2f}x the likelihood per point"
)
