# %% [markdown]
# # 05 · Information, entropy, cross-entropy, KL and JS (notes 2.4.3, eq. 40–48, Figura 16)
#
# The information of an event is I(A) = −log_b Prob(A) (eq. 42): the only continuous,
# non-negative choice that adds up over independent events (eq. 40–41); b = 2 measures it
# in bits, b = e in nats (the notes' choice). H(p) = E_p[−log p] (eq. 43) is the expected
# information, CE(p, q) = E_p[−log q] (eq. 44), and CE = H + KL (eq. 46) with
# KL(p‖q) = E_p[log p/q] ≥ 0 (eq. 47, Gibbs). With p = p_D, the empirical distribution of
# the data, CE(p_D, p_θ) = −(1/K) log p_θ(D) (eq. 45): maximum likelihood = minimum
# cross-entropy = minimum KL (eq. 48). Beside the KL the chapter cites the Jensen–Shannon
# distance, d_JS(p, q)² = ½ KL(p‖m) + ½ KL(q‖m) with m = (p + q)/2.

# %%
import math

import matplotlib.pyplot as plt
import torch
from torch.distributions import Gumbel, Laplace, MultivariateNormal, Normal, StudentT, Uniform

from pyrobn import info
from pyrobn.datasets import course_mixture
from pyrobn.datasets.mixture import course_mixture_log_prob
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "05_information",
    figures=["bernoulli_entropy", "max_entropy", "mle_min_ce_min_kl", "figura16_kl_asymmetry"],
    title="Information, entropy, cross-entropy, KL and JS",
)

# %% [markdown]
# ## The information of an event (eq. 40–42)
# A fair die shows a six (probability 1/6) and a fair coin lands heads (1/2), independently.
# The information of both is the sum of the two, in any base: log₂ 6 + 1 ≈ 3.585 bits,
# or the same number times log 2 in nats.

# %%
p_six, p_heads = 1 / 6, 1 / 2
both = info.information(p_six * p_heads, base=2)
tut.record("I(six and heads) in bits", float(both), fmt=".4f")
tut.check_close(
    "information adds up over independent events (eq. 40-41)",
    both,
    info.information(p_six, base=2) + info.information(p_heads, base=2),
    rtol=1e-12,
)
tut.check_close(
    "nats = bits x log 2",
    info.information(p_six * p_heads),
    float(both) * math.log(2),
    rtol=1e-12,
)

# %% [markdown]
# ## Entropy of a Bernoulli: largest at r = 1/2 (after eq. 43)
# One bit (log 2 nats) at r = 1/2, none when the outcome is sure.

# %%
r = torch.linspace(0, 1, 501, dtype=torch.float64)
h = info.entropy(torch.stack([1 - r, r], -1))
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(r, h)
ax.set(xlabel="r", ylabel="H (nats)", title="H(Bernoulli(r))")
tut.save(fig, "bernoulli_entropy")
tut.record("max_bernoulli_entropy", float(h.max()), fmt=".6f")  # log 2
tut.check_close("max Bernoulli entropy is log 2, at r = 1/2", h.max(), math.log(2), atol=1e-15)
tut.check("it is reached at r = 1/2", float(r[h.argmax()]) == 0.5)
tut.check_close("a fair coin holds one bit", info.entropy([0.5, 0.5], base=2), 1.0, atol=1e-15)
tut.check("a sure outcome holds none", float(h[0]) == 0.0 and float(h[-1]) == 0.0)

# %% [markdown]
# ## Maximum entropy (2.4.3.1)
# On n states no table has more entropy than the uniform one: log n − H(p) = KL(p‖uniform)
# ≥ 0. On the real line, among densities of a given variance σ², none has more than the
# Gaussian, ½ log(2πeσ²). Left: random tables against log n; right: five densities of
# variance 1 against the Gaussian's entropy.

# %%
with torch.random.fork_rng():
    torch.manual_seed(0)
    tables = {
        n: torch.distributions.Dirichlet(torch.ones(n, dtype=torch.float64)).sample((200,))
        for n in range(2, 11)
    }
entropies = {n: info.entropy(t) for n, t in tables.items()}
unit_variance = {
    "Gaussian": Normal(0.0, 1.0),
    "Laplace": Laplace(0.0, 2.0**-0.5),
    "Student t(5)": StudentT(5.0, 0.0, 0.6**0.5),
    "Gumbel": Gumbel(0.0, 6.0**0.5 / math.pi),
    "uniform": Uniform(-(3.0**0.5), 3.0**0.5),
}
continuous = {k: float(info.entropy(d)) for k, d in unit_variance.items()}
bound = 0.5 * math.log(2 * math.pi * math.e)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for n, hs in entropies.items():
    axes[0].plot([n] * len(hs), hs, ".", color="C0", alpha=0.3)
axes[0].plot(list(entropies), [math.log(n) for n in entropies], "k-", label="log n (uniform)")
axes[0].set(xlabel="number of states n", ylabel="H (nats)", title="random tables vs uniform")
axes[0].legend()
axes[1].barh(list(continuous), list(continuous.values()), color="C0")
axes[1].axvline(bound, color="k", ls="--", label="½ log(2πe): Gaussian")
axes[1].set(xlabel="H (nats), variance 1", xlim=(1.1, 1.45), title="densities of variance 1")
axes[1].legend(loc="lower right")
tut.save(fig, "max_entropy")
tut.record("entropy at variance 1 (nats)", continuous)
tut.check(
    "no table has more entropy than the uniform one",
    all(bool((hs < math.log(n)).all()) for n, hs in entropies.items()),
)
tut.check_close(
    "log n - H = KL(p || uniform)",
    torch.cat([math.log(n) - hs for n, hs in entropies.items()]),
    torch.cat([info.kl_divergence(t, torch.full_like(t, 1 / n)) for n, t in tables.items()]),
    atol=1e-12,
)
tut.check_close("the Gaussian reaches the bound", continuous["Gaussian"], bound, rtol=1e-6)
tut.check(
    "every other density of variance 1 is below it",
    all(v < bound for k, v in continuous.items() if k != "Gaussian"),
    f"{ {k: round(v, 4) for k, v in continuous.items()} } vs {bound:.4f}",
)

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
gap = float(info.cross_entropy(p, q) - info.entropy(p) - exact)
tut.record("ce_minus_h_minus_kl", gap, fmt=".2e")
tut.check(
    "Monte Carlo KL within 4 standard errors of the closed form",
    abs(float(mc.value) - float(exact)) < 4 * float(mc.stderr),
    f"{float(mc.value):.5f} +- {float(mc.stderr):.5f} vs {float(exact):.5f}",
)
tut.check("CE = H + KL (eq. 46)", abs(gap) < 1e-12, f"{gap:.2e}")

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
log_lik = course_mixture_log_prob(x.unsqueeze(0), rs.unsqueeze(-1)).sum(-1)
tut.check("min CE = max likelihood (eq. 45, 48)", int(ce_data.argmin()) == int(log_lik.argmax()))
tut.check(
    "KL(p_data || p_r) is smallest at the true r = 0.8",
    abs(float(rs[kl_true.argmin()]) - 0.8) <= float(rs[1] - rs[0]),
    f"argmin {float(rs[kl_true.argmin()]):.4f}",
)

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
tut.check_close(
    "forward KL matches the moments of p", [m_f, s_f], [0.0, (0.8**2 + 9) ** 0.5], atol=1e-3
)
tut.check(
    "reverse KL locks onto one mode",
    abs(m_r - 3.0) < 0.05 and abs(s_r - 0.8) < 0.05,
    f"q = N({m_r:.3f}, {s_r:.3f}^2)",
)

# %% [markdown]
# ## The Jensen–Shannon distance
# KL is not symmetric and can be infinite; the Jensen–Shannon divergence
# ½ KL(p‖m) + ½ KL(q‖m), m = (p + q)/2, is symmetric and at most log 2 (one bit), and its
# square root d_JS is a distance (the one the chapter cites, and the one the original GAN
# minimises). For tables it is exact (the same number as SciPy's `jensenshannon`, which
# the tests check); for densities it is a Monte Carlo estimate. Here: the bimodal p
# against its two Gaussian fits above.

# %%
a, b = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.1, 0.3, 0.6])
d_ab = float(info.js_distance(a, b, base=2))
tut.record("d_JS(a, b) in bits", d_ab, fmt=".6f")
m_ab = 0.5 * (a + b)
by_kl = 0.5 * (info.kl_divergence(a, m_ab, base=2) + info.kl_divergence(b, m_ab, base=2))
tut.check_close("d_JS^2 = 1/2 KL(a || m) + 1/2 KL(b || m)", d_ab**2, by_kl, atol=1e-7)
tut.check_close("d_JS is symmetric", info.js_distance(b, a, base=2), d_ab, atol=1e-7)
tut.check(
    "disjoint tables are one bit apart",
    float(info.js_divergence([1.0, 0.0], [0.0, 1.0], base=2)) == 1.0,
)
p_bimodal = torch.distributions.MixtureSameFamily(
    torch.distributions.Categorical(torch.tensor([0.5, 0.5], dtype=torch.float64)),
    Normal(torch.tensor([-3.0, 3.0], dtype=torch.float64), 0.8),
)
n_js = tut.steps(100_000, 20_000)
js = {
    "forward fit": info.js_distance(p_bimodal, Normal(m_f, s_f), num_samples=n_js, seed=0),
    "reverse fit": info.js_distance(p_bimodal, Normal(m_r, s_r), num_samples=n_js, seed=0),
}
tut.record("d_JS(p, q) of the two fits (nats^1/2)", {k: float(v) for k, v in js.items()})
tut.check(
    "both fits are at a positive JS distance below sqrt(log 2)",
    all(0 < float(v.value) < math.log(2) ** 0.5 for v in js.values()),
)
