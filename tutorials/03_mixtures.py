# %% [markdown]
# # 03 · Gaussian mixtures with a learned prior weight (notes 2.4.4, eq. 49–50)
#
# The notes' worked example is a Bayesian network with a latent class z and an observed x:
# z ~ Bernoulli(r), x | z ~ N(μ_z, σ_z²), so (eq. 49–50)
#
# p(x) = (1 − r) N(x | −1, 1) + r N(x | 3, 2²),  with r = 0.8.
#
# `pyrobn.GaussianMixture` is this model as a Pyro model/guide pair: z is a discrete site
# enumerated exactly (`TraceEnum_ELBO`), so the loss is the exact normalised negative
# log-likelihood −(1/|D|) log p_θ(D) of eq. 45, and the prior weight is r = sigmoid(θ),
# the notes' `PriorEstimator`. Training with plain SGD is the notes' `train_loop`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import pyrobn
from pyrobn.datasets import course_mixture
from pyrobn.datasets.mixture import COURSE_MIXTURE, course_mixture_log_prob
from pyrobn.models.mixture import weight_mle_two_components
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "03_mixtures",
    figures=["figura17_data", "figura18_lr_sweep", "responsibilities", "full_mixture"],
    title="Gaussian mixtures with a learned prior weight",
)
P = COURSE_MIXTURE
x = course_mixture(1000, seed=0, device="cpu")

# %% [markdown]
# ## Figura 17: the data, drawn by ancestral sampling (z first, then x | z)

# %%
grid = torch.linspace(float(x.min()) - 1, float(x.max()) + 1, 1000, dtype=torch.float64)
kde = pyrobn.KDE(x, bandwidth="scott")
fig, ax = plt.subplots(figsize=(8, 5))
ax.hist(x.numpy(), bins=100, density=True, alpha=0.3, label="1000 samples")
ax.plot(grid, course_mixture_log_prob(grid, P["r"]).exp(), label="p(x), eq. 50")
ax.plot(grid, kde.log_prob(grid).exp(), "--", label=f"KDE (h = {kde.bandwidth:.2f})")
ax.set(xlabel="x", ylabel="densidad", title="Figura 17")
ax.legend()
ax.grid(alpha=0.3)
tut.save(fig, "figura17_data")

# %% [markdown]
# ## Learning r by gradient ascent on the mean log-likelihood
#
# The means and scales are fixed (a buffer), only θ (r = sigmoid θ) is learned. The
# exact maximiser r* of the mean log-likelihood on these samples is found by a 1-D
# root solve of its derivative (the log-likelihood is concave in r).


# %%
def notes_model(theta0: float) -> pyrobn.GaussianMixture:
    r0 = 1 / (1 + math.exp(-theta0))
    return pyrobn.GaussianMixture(
        2,
        learn=("weights",),
        means=[P["mu0"], P["mu1"]],
        scales=[P["s0"], P["s1"]],
        weights=[1 - r0, r0],
    )


gm = notes_model(0.5)
gm.fit(x, steps=tut.steps(500, 50), lr=1.0, optimizer="sgd", init="keep")
log_p = gm.joint_log_probs(x) - gm.weights.log()
r_star = weight_mle_two_components(x, log_p[:, 0], log_p[:, 1])
r_learned = float(gm.weights[1].detach())
tut.record("r_learned_sgd_lr1", r_learned, fmt=".4f")
tut.record("r_exact_maximiser", r_star, fmt=".6f")
tut.record("abs_error_r", abs(r_learned - r_star), fmt=".2e")

# %% [markdown]
# ## Figura 18: the learning-rate sweep (θ₀ = 0.1, 100 iterations of SGD)
#
# Left: the normalised NLL per iteration against its value at the true r = 0.8;
# right: the predicted r against the true r. Small rates crawl, moderate ones converge
# in a few steps, and large ones overshoot and oscillate before settling.

# %%
rates = [0.1, 1, 10, 20, 30]
iterations = tut.steps(100, 20)
nll_true = -float(course_mixture_log_prob(x, P["r"]).mean())
fig, axes = plt.subplots(len(rates), 2, figsize=(12, 3 * len(rates)))
final_r = {}
for row, lr in enumerate(rates):
    pyro.clear_param_store()
    model = notes_model(0.1)
    r_path = [float(model.weights[1].detach())]
    history = model.fit(
        x,
        steps=iterations,
        lr=float(lr),
        optimizer="sgd",
        init="keep",
        callback=lambda step, loss, m=model, path=r_path: path.append(float(m.weights[1].detach())),
    )
    final_r[lr] = r_path[-1]
    axes[row, 0].axhline(nll_true, ls="--", color="r", alpha=0.7, label="valor real")
    axes[row, 0].plot(history.losses, label="entrenamiento")
    axes[row, 0].set(xlabel="Iteración", ylabel="-log p(x)", title=f"NLL normalizada (lr={lr})")
    axes[row, 1].axhline(P["r"], ls="--", color="r", alpha=0.7, label="valor real")
    axes[row, 1].plot(r_path[:-1], label="predicción")
    axes[row, 1].set(xlabel="Iteración", ylabel="r", title=f"r predicho (lr={lr})")
    for ax in axes[row]:
        ax.grid(alpha=0.3)
        ax.legend()
fig.tight_layout()
tut.save(fig, "figura18_lr_sweep")
tut.record("final_r_by_lr", final_r)

# %% [markdown]
# ## Responsibilities p(z | x)
#
# Bayes' rule on the network: p(z = 1 | x) = r N(x | 3, 4) / p(x). The component with
# the larger variance wins in both tails.

# %%
resp = gm.responsibilities(grid)
fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(grid, resp[:, 1], label="p(z = 1 | x)")
ax.plot(grid, resp[:, 0], label="p(z = 0 | x)")
ax.set(xlabel="x", ylabel="responsabilidad")
ax.legend()
ax.grid(alpha=0.3)
tut.save(fig, "responsibilities")

# %% [markdown]
# ## The full mixture: weights, means and variances all learned
#
# `learn="all"`, several restarts, keeping the best. The EM path (closed-form M-step) and
# the SVI path (`fit_svi` with `TraceEnum_ELBO`) reach the same maximum; scikit-learn's
# `GaussianMixture` is the reference on held-out data.

# %%
x_test = course_mixture(tut.steps(5000, 1000), seed=1, device="cpu")
full_em = pyrobn.GaussianMixture(2, learn="all")
full_em.fit(x, method="em", steps=1000, tol=1e-9, restarts=3)
full_svi = pyrobn.GaussianMixture(2, learn="all")
full_svi.fit(x, method="svi", steps=tut.steps(400, 60), lr=0.2, restarts=tut.steps(2, 1))
sk = SkGaussianMixture(2, tol=1e-6, n_init=3, random_state=0).fit(x.numpy()[:, None])
tut.record("heldout_loglik_em", full_em.score(x_test), fmt=".5f")
tut.record("heldout_loglik_svi", full_svi.score(x_test), fmt=".5f")
tut.record("heldout_loglik_sklearn", float(sk.score(x_test.numpy()[:, None])), fmt=".5f")
tut.record("full_em_weights", full_em.weights.detach())
tut.record("full_em_means", full_em.means.detach().ravel())
tut.record("full_em_scales", full_em.covariances.detach().ravel().sqrt())

fig, ax = plt.subplots(figsize=(8, 5))
ax.hist(x.numpy(), bins=100, density=True, alpha=0.3, label="datos")
ax.plot(grid, course_mixture_log_prob(grid, P["r"]).exp(), label="verdadera")
ax.plot(grid, full_em.log_prob(grid).exp(), "--", label="mezcla completa (EM)")
ax.plot(grid, full_svi.log_prob(grid).exp(), ":", label="mezcla completa (SVI)")
ax.set(xlabel="x", ylabel="densidad")
ax.legend()
ax.grid(alpha=0.3)
tut.save(fig, "full_mixture")
print(np.round(full_em.bic(x), 2), "BIC of the full 2-component mixture")
