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
# scale with the data's spread, and "cv" (held-out likelihood).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import pyrobn
from pyrobn.datasets import course_mixture
from pyrobn.density import EmpiricalDistribution
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "02_kde",
    figures=["figura6_kde_1d", "figura7_kde_2d", "bandwidth_fit", "heldout_vs_bandwidth"],
    title="Empirical distribution and KDE",
)
rng = np.random.default_rng(0)

# %% [markdown]
# ## Figura 6: five points in [0, 1], Gaussian kernel with h = 0.1

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

# %% [markdown]
# ## Figura 7: five points in the unit square; the RBF kernel has circular level sets

# %%
data_2d = torch.as_tensor(rng.random((5, 2)))
kde2 = pyrobn.KDE(data_2d, bandwidth=0.1)
g = torch.linspace(0, 1, 150, dtype=torch.float64)
gx, gy = torch.meshgrid(g, g, indexing="xy")
density = kde2.log_prob(torch.stack([gx.ravel(), gy.ravel()], -1)).exp().view(150, 150)
fig, ax = plt.subplots(figsize=(6, 5))
im = ax.imshow(density, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
ax.plot(data_2d[:, 0], data_2d[:, 1], "wo")
fig.colorbar(im, ax=ax, label="p(x)")
ax.set(xlabel="x1", ylabel="x2", title="Figura 7: KDE en D = 2")
tut.save(fig, "figura7_kde_2d")

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
tut.record("best_grid_bandwidth", float(hs[int(np.argmax(heldout))]), fmt=".4f")

# %% [markdown]
# ## The rules of thumb scale with the data
#
# Multiply the data by 20: every rule multiplies h by 20 (scikit-learn's string bandwidths
# do not, its issues #25623 and #26658), so the estimate is the same shape in new units.

# %%
ratio = pyrobn.KDE(20 * train, "scott").bandwidth / rules["scott"].bandwidth
tut.record("scott_ratio_at_scale_20", ratio, fmt=".6f")
