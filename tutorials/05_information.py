# %% [markdown]
# # 05 · Entropy, cross-entropy and KL (notes 2.4.3, eq. 42–48, Figura 16)
#
# H(p) = E_p[−log p] (eq. 43), CE(p, q) = E_p[−log q] (eq. 44), and CE = H + KL (eq. 46)
# with KL(p‖q) = E_p[log p/q] ≥ 0 (eq. 47, Gibbs). With p = p_D, the empirical
# distribution of the data, CE(p_D, p_θ) = −(1/K) log p_θ(D) (eq. 45): maximum likelihood
# = minimum cross-entropy = minimum KL (eq. 48).

# %%
import math

import matplotlib.pyplot as plt
import torch
from torch.distributions import MultivariateNormal, Normal

from pyrobn import info
from pyrobn.datasets import course_mixture
from pyrobn.datasets.mixture import course_mixture_log_prob
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "05_information",
    figures=["bernoulli_entropy", "mle_min_ce_min_kl", "figura16_kl_asymmetry"],
    title="Entropy, cross-entropy and KL",
)

# %% [markdown]
# ## Entropy of a Bernoulli: largest at r = 1/2 (after eq. 43)

# %%
r = torch.linspace(1e-4, 1 - 1e-4, 500, dtype=torch.float64)
h = info.entropy(torch.stack([1 - r, r], -1))
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(r, h)
ax.set(xlabel="r", ylabel="H (nats)", title="H(Bernoulli(r))")
tut.save(fig, "bernoulli_entropy")
tut.record("max_bernoulli_entropy", float(h.max()), fmt=".6f")  # log 2

# %% [markdown]
# ## Closed forms and Monte Carlo agree (within their standard errors)

# %%
p = MultivariateNormal(
    torch.zeros(2, dtype=torch.float64), torch.tensor([[1.0, 0.6], [0.6, 2.0]], dtype=torch.float64)
)
q = MultivariateNormal(torch.ones(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
exact = info.kl_divergence(p, q)
mc = info.kl_divergence(p, q, method="mc", num_samples=tut.steps(200_000, 20_000), seed=0)
tut.record("kl_gaussians_exact", float(exact), fmt=".5f")
tut.record("kl_gaussians_mc", float(mc.value), fmt=".5f")
tut.record("kl_gaussians_mc_stderr", float(mc.stderr), fmt=".5f")
tut.record(
    "ce_minus_h_minus_kl",
    float(info.cross_entropy(p, q) - info.entropy(p) - exact),
    fmt=".2e",
)

# %% [markdown]
# ## MLE = min CE = min KL (eq. 45–48) on the notes' mixture
#
# For each r, CE(p_D, p_r) = −(1/K) log p_r(D) exactly (eq. 45). The KL to the model is
# CE − H(p_data); with the true p_data known here, KL(p_data‖p_r) (by quadrature) has its
# minimum at the true r = 0.8, and the sample version has its minimum at the MLE.

# %%
x = course_mixture(tut.steps(2000, 500), seed=0, device="cpu")
rs = torch.linspace(0.5, 0.95, 181, dtype=torch.float64)
ce_data = -course_mixture_log_prob(x.unsqueeze(0), rs.unsqueeze(-1)).mean(-1)  # eq. 45
grid = torch.linspace(-12, 16, 8001, dtype=torch.float64)
dx = grid[1] - grid[0]
log_true = course_mixture_log_prob(grid, 0.8)
kl_true = (
    log_true.exp() * (log_true - course_mixture_log_prob(grid.unsqueeze(0), rs.unsqueeze(-1)))
).sum(-1) * dx
fig, ax1 = plt.subplots(figsize=(7, 4))
ax1.plot(rs, ce_data, label="CE(p_D, p_r) = -(1/K) log p_r(D)")
ax1.set(xlabel="r", ylabel="nats")
ax2 = ax1.twinx()
ax2.plot(rs, kl_true, color="C1", label="KL(p_data || p_r)")
r_mle = float(rs[ce_data.argmin()])
ax1.axvline(r_mle, color="C0", ls="--")
ax1.axvline(0.8, color="C1", ls=":")
fig.legend(loc="upper center")
tut.save(fig, "mle_min_ce_min_kl")
tut.record("argmin_ce_on_grid", r_mle, fmt=".4f")
tut.record("argmin_kl_true_on_grid", float(rs[kl_true.argmin()]), fmt=".4f")

# %% [markdown]
# ## Figura 16: the order of the arguments of KL
#
# p is bimodal. The Gaussian q minimising KL(p‖q) (as maximum likelihood does, eq. 48)
# must put mass wherever p has it, so it covers both modes; the q minimising KL(q‖p)
# (as variational inference does) pays for mass where p has none, so it locks onto one
# mode.


# %%
def log_p(z: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(
        Normal(-3.0, 0.8).log_prob(z) + math.log(0.5), Normal(3.0, 0.8).log_prob(z) + math.log(0.5)
    )


m_f, s_f = info.fit_gaussian_by_kl(log_p, "forward", init=(1.0, 1.0))
m_r, s_r = info.fit_gaussian_by_kl(log_p, "reverse", init=(1.0, 1.0))
z = torch.linspace(-8, 8, 1000, dtype=torch.float64)
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
for ax, (m, s), title in zip(
    axes, [(m_f, s_f), (m_r, s_r)], ["argmin_q KL(p || q)", "argmin_q KL(q || p)"]
):
    ax.plot(z, log_p(z).exp(), label="p (bimodal)")
    ax.plot(z, Normal(m, s).log_prob(z).exp(), label=f"q = N({m:.2f}, {s:.2f}²)")
    ax.set(title=title, xlabel="x")
    ax.legend()
tut.save(fig, "figura16_kl_asymmetry")
tut.record("forward_kl_q", [m_f, s_f])
tut.record("reverse_kl_q", [m_r, s_r])
