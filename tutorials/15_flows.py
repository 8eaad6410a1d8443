# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 15 · Normalizing flows: eq. 18 on the swiss roll, on digits, and as a guide
#
# Notes, section 2.2.2.5, eq. 18 and Figura 12. A normalizing flow pushes a simple
# variable z ~ q = N(0, I) through an invertible, differentiable map x = f(z); the
# change-of-variables theorem gives the density of x exactly,
#
# p(x) = q(f⁻¹(x)) |det D_x f⁻¹(x)|                                          (eq. 18)
#
# with f = f_N ∘ … ∘ f_1 a composition whose log-Jacobian is the sum of the layers'
# (the chain rule). Its Bayesian network (Figura 12) is z → x with a deterministic edge;
# read backwards, z = f⁻¹(x) is the latent code of x (2.2.4).
#
# `pyrobn.NormalizingFlow` builds f from zuko's layers (rational-quadratic spline or
# affine; coupling or autoregressive), wired into Pyro as a `TransformedDistribution`
# over N(0, I). zuko rather than Pyro's own (frozen) transforms, by measurement: the
# same 4-layer spline coupling flow learns the digits several times faster per epoch
# with zuko (`bench/paradigms.py flow-libraries`, README).

# %%
import math

import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch

import pyrobn
from pyrobn.datasets import book_digits, swiss_roll
from pyrobn.infer import compare_guides, fit_svi
from pyrobn.infer.flow_guide import AmortizedFlowGuide, AutoFlowGuide, iwae_bound
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "15_flows",
    figures=["dag", "swiss_roll", "dequantization", "latent", "flow_guide"],
    title="Normalizing flows (eq. 18): swiss roll, digits, flow guides",
)
torch.set_num_threads(1)
BOOK_IDF, BOOK_REALNVP = 142.7, 167.2

# %% [markdown]
# ## The Bayesian network (Figura 12)
# On continuous data z → x, x = f(z). On the digits' integer grey levels the flow
# models a continuous v and the data is its integer part: z → v = f(z) → x = ⌊v⌋.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
pyrobn.NormalizingFlow(2, n_transforms=2, hidden=(8,)).graph().draw(ax=axes[0])
pyrobn.NormalizingFlow(64, levels=17, n_transforms=2, hidden=(8,)).graph().draw(ax=axes[1])
axes[0].set_title("continuous data")
axes[1].set_title("integer levels, dequantised")
tut.save(fig, "dag")

# %% [markdown]
# ## The swiss roll (Figura 13), with the autoregressive model beside it
# The roll's two ambient coordinates (x₁, x₃) of `make_swiss_roll`: a thin spiral that
# no Gaussian fits. Left: the flow's base grid; middle: that grid pushed through f onto
# the data (the map from the base to the data); right: log p(x) of the flow and of an
# autoregressive model p(x₁) p(x₃ | x₁) with mixture-of-logistics conditionals (a
# MADE), each with 500 samples.

# %%
x3d, _ = swiss_roll(tut.steps(3000, 300), noise=0.3, seed=0, device="cpu")
x_roll = x3d[:, [0, 2]]
flow2d = pyrobn.NormalizingFlow(
    2,
    transform="spline_coupling",
    n_transforms=tut.steps(6, 2),
    hidden=(tut.steps(64, 8),) * 2,
    bins=tut.steps(16, 4),
)
flow2d.fit(x_roll, epochs=tut.steps(300, 2), batch_size=256, lr=3e-3, seed=0, progress=False)
ar2d = pyrobn.AutoregressiveModel(
    2, "logistic_mixture", network="made", hidden=tut.steps(128, 8), components=tut.steps(10, 2)
)
ar2d.fit(x_roll, epochs=tut.steps(300, 2), batch_size=256, lr=3e-3, seed=0, progress=False)
g = torch.linspace(-16, 16, tut.steps(241, 61))
grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
h = float(g[1] - g[0])
fig, axes = plt.subplots(1, 4, figsize=(17, 4))
lines = torch.linspace(-2.5, 2.5, 11)
t = torch.linspace(-3, 3, 200)
for c in lines:
    for pts in (torch.stack([t, c.expand(200)], -1), torch.stack([c.expand(200), t], -1)):
        axes[0].plot(pts[:, 0], pts[:, 1], lw=0.6, color="C0")
        mapped = flow2d.decode(pts)
        axes[1].plot(mapped[:, 0], mapped[:, 1], lw=0.6, color="C0")
axes[0].set(title="base z ~ N(0, I): a grid", aspect="equal")
axes[1].scatter(x_roll[:, 0], x_roll[:, 1], s=2, color="0.6")
axes[1].set(title="the grid pushed through f", aspect="equal")
integrals = {}
for ax, (name, model) in zip(axes[2:], [("flow", flow2d), ("autoregressive", ar2d)]):
    with torch.no_grad():
        density = model.log_prob(grid).reshape(len(g), len(g))
    integrals[name] = float(density.exp().sum() * h * h)
    ax.contourf(g, g, density.clamp(min=-12), levels=20, cmap="viridis")
    s = model.sample(500, seed=0)
    ax.scatter(s[:, 0], s[:, 1], s=2, color="w")
    nll = float(-model.log_prob(x_roll).detach().mean())
    ax.set(title=f"{name}: log p(x), samples (NLL {nll:.2f})", aspect="equal")
    tut.record(f"swiss_roll_{name}_train_nll", nll, fmt=".3f")
    tut.record(f"swiss_roll_{name}_density_integral", integrals[name], fmt=".4f")
tut.save(fig, "swiss_roll")
if not tut.smoke:  # in smoke the short-trained flow leaves mass outside the window
    tut.check_close(
        "the flow's density integrates to 1 over the window", integrals["flow"], 1.0, atol=0.02
    )

# %% [markdown]
# ## Digits: dequantisation turns a density into a bound on the discrete likelihood
# A density gives no probability to an integer vector. With v = x + u, u ∈ [0, 1)^64,
#
# P(x) = ∫ p_v(x + u) du ≥ exp E_q[log p_v(x + u) − log q(u | x)]          (Jensen)
#
# so −E_q[…] is an *upper bound* on the NLL in nats per image. Uniform dequantisation
# takes q = U(0, 1)^64; variational dequantisation learns q(u | x) as a second,
# conditional flow (Flow++) and tightens it; importance weighting with K draws,
# −log (1/K) Σ_k p_v(x + u_k)/q(u_k | x), tightens it further and is still an upper
# bound in expectation. The flow models v on (0, 17)^64 through logit(v / 17), so its
# probabilities over the 17^64 grey-level images sum to exactly 1. The book's integer
# discrete flow reaches 142.7 (exact) and its RealNVP a bound of 167.2.

# %%
data = book_digits(levels=17, device="cpu")
x_train, x_val, x_test = data.x_train, data.x_val, data.x_test
if tut.smoke:
    x_train, x_val, x_test = x_train[:100], x_val[:50], x_test[:50]
bounds, flows = {}, {}
val_samples = tut.steps(4, 1)
for deq in ("uniform", "variational"):
    flow = pyrobn.NormalizingFlow(
        64,
        levels=17,
        transform="spline_coupling",
        n_transforms=tut.steps(6, 1),
        hidden=(tut.steps(256, 16),) * 2,
        dequantization=deq,
        dequantizer_hidden=(tut.steps(128, 8),) * 2,
    )
    flow.fit(
        x_train,
        epochs=tut.steps(300, 1),
        x_val=x_val,
        patience=tut.steps(25, 1),
        val_samples=val_samples,
        seed=0,
        progress=False,
    )
    flows[deq] = flow
    tut.check_close(
        f"early stopping keeps the {deq} flow's best validation bound",
        flow.nll(x_val, num_samples=val_samples, seed=0).mean(),
        min(flow.validation_nll_),
        rtol=1e-5,
    )
    k_max = tut.steps(32, 2)
    for k in (1, k_max):
        bounds[(deq, k)] = float(flow.nll(x_test, num_samples=k, seed=0).mean())
        tut.record(f"flow_{deq}_bound_K{k}", bounds[(deq, k)], fmt=".2f")
    tut.check(
        f"importance weighting with K = {k_max} draws tightens the {deq} bound",
        bounds[(deq, k_max)] < bounds[(deq, 1)],
        f"K = {k_max}: {bounds[(deq, k_max)]:.2f} vs K = 1: {bounds[(deq, 1)]:.2f} nats",
    )
best = min(bounds.values())
tut.record("flow_best_bound_nats", best, fmt=".2f")
if not tut.smoke:
    tut.check(
        "the flow's bound beats the book's integer discrete flow (142.7 nats)",
        best < BOOK_IDF,
        f"best bound {best:.2f} vs {BOOK_IDF}",
    )
    tut.check(
        "variational dequantisation tightens the uniform bound (K = 1)",
        bounds[("variational", 1)] < bounds[("uniform", 1)],
        f"{bounds[('variational', 1)]:.2f} vs {bounds[('uniform', 1)]:.2f} nats",
    )
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})
names = [f"{d}\nK = {k}" for d, k in bounds]
axes[0].bar(names, list(bounds.values()), color=["C0", "C0", "C1", "C1"])
for ref, label in ((BOOK_REALNVP, "book RealNVP (bound)"), (BOOK_IDF, "book IDF (exact)")):
    axes[0].axhline(ref, ls="--", color="0.4")
    axes[0].text(-0.4, ref + 1, label, fontsize=8)
axes[0].set(ylabel="test NLL bound (nats/image)", title="dequantisation bounds on the test split")
draws = flows["variational"].sample(32, seed=0, temperature=0.8)
mosaic = draws.reshape(4, 8, 8, 8).permute(0, 2, 1, 3).reshape(32, 64)
axes[1].imshow(mosaic, cmap="gray_r", vmin=0, vmax=16)
axes[1].set(title="flow samples (base temperature 0.8)")
axes[1].axis("off")
tut.save(fig, "dequantization")

# %% [markdown]
# ## The latent of a digit (2.2.4)
# f⁻¹ maps each test digit (at the centre of its cells) to z; if the flow fits, the
# z's look like draws of N(0, I): every coordinate standard normal.

# %%
z = flows["variational"].inverse(x_test)
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.hist(z.flatten().numpy(), bins=60, density=True, color="C0", alpha=0.7)
zz = torch.linspace(-4, 4, 200)
ax.plot(zz, dist.Normal(0.0, 1.0).log_prob(zz).exp(), color="C3", label="N(0, 1)")
ax.set(xlabel="coordinates of z = f⁻¹(x), test digits", title="the latent codes")
ax.legend()
tut.save(fig, "latent")
tut.record("latent_mean", float(z.mean()), fmt=".3f")
tut.record("latent_sd", float(z.std()), fmt=".3f")

# %% [markdown]
# ## A flow as a guide
# Variational inference loses KL(q ‖ p(θ | x)) = log p(x) − ELBO; a Gaussian q cannot
# bend. Here θ ∈ R², y_i ~ N(θ₁θ₂, 0.5²): the posterior lies along the hyperbola
# θ₁θ₂ ≈ ȳ, in two quadrants. `AutoFlowGuide` is an `AutoContinuous` guide whose q is a
# spline flow, so `compare_guides` takes it like `AutoNormal`; log p(y) comes from a
# fine grid, so each guide's KL to the exact posterior is log p(y) − ELBO.

# %%
y_obs = torch.tensor([1.0, 1.2, 0.8, 1.1, 0.9])


def product_model(y):
    theta = pyro.sample("theta", dist.Normal(torch.zeros(2), torch.ones(2)).to_event(1))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(theta[..., 0] * theta[..., 1], 0.5), obs=y)


gg = torch.linspace(-4, 4, 401, dtype=torch.float64)
A, B = torch.meshgrid(gg, gg, indexing="xy")
log_post = (
    dist.Normal(0.0, 1.0).log_prob(A)
    + dist.Normal(0.0, 1.0).log_prob(B)
    + dist.Normal((A * B)[..., None], 0.5).log_prob(y_obs.double()).sum(-1)
)
log_evidence = float(torch.logsumexp(log_post.flatten(), 0) + 2 * math.log(float(gg[1] - gg[0])))
cmp = compare_guides(
    product_model,
    {"normal": "normal", "mvn": "mvn", "flow": AutoFlowGuide},
    y_obs,
    steps=tut.steps(1500, 30),
    num_samples=tut.steps(1000, 50),
    elbo_particles=tut.steps(1000, 20),
    seed=0,
)
tut.record("log_evidence", log_evidence, fmt=".3f")
fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
kl = {}
for ax, (name, result) in zip(axes, cmp.results.items()):
    kl[name] = log_evidence - result.elbo
    tut.record(f"guide_{name}_kl", kl[name], fmt=".3f")
    ax.contour(gg, gg, log_post.exp(), levels=8, colors="0.5", linewidths=0.6)
    d = result.draws["theta"]
    ax.scatter(d[:, 0], d[:, 1], s=2, color="C3")
    ax.set(title=f"{name}: KL(q‖p) = {kl[name]:.2f}", xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
stderr = {name: result.elbo_stderr for name, result in cmp.results.items()}
tut.check(
    "every guide's ELBO is below log p(y): KL(q‖p) >= 0 within 3 Monte Carlo s.e.",
    all(kl[name] > -3 * stderr[name] for name in kl),
    ", ".join(f"{name}: {kl[name]:.3f} (s.e. {stderr[name]:.3f})" for name in kl),
)
if not tut.smoke:
    tut.check(
        "the flow guide bends: KL flow < KL mvn < KL normal",
        kl["flow"] < kl["mvn"] < kl["normal"],
        ", ".join(f"{name}: {value:.3f}" for name, value in kl.items()),
    )

# %% [markdown]
# ### An amortised flow posterior for a VAE
# The same idea inside a VAE (lecture): q(z | x) = μ(x) + σ(x) ⊙ g(ε; h(x)), a spline
# flow conditioned on the encoder's features. `AmortizedFlowGuide` has the signature of
# `VAE.model`, so `fit_svi(vae.model, guide, x)` trains decoder and flow posterior
# together; the test ELBO and the importance-weighted bound (K = 100) are compared
# with the VAE's own Gaussian posterior, trained for the same steps.

# %%
bx_train, _, bx_test, _ = pyrobn.datasets.digits(binarize=True, device="cpu")
if tut.smoke:
    bx_train, bx_test = bx_train[:128], bx_test[:64]
vae_steps = tut.steps(4000, 5)
gauss = pyrobn.VAE(64, latent_dim=4, hidden=(128,))
gauss.fit(bx_train, steps=vae_steps, batch_size=128, lr=2e-3, seed=0, progress=False)
vae = pyrobn.VAE(64, latent_dim=4, hidden=(128,))
guide = AmortizedFlowGuide(64, 4, hidden=(128,), n_transforms=2, flow_hidden=(64, 64))
fit_svi(
    vae.model,
    guide,
    bx_train,
    batch_size=128,
    steps=vae_steps,
    seed=0,
    progress=False,
    optim=pyro.optim.Adam({"lr": 2e-3}),
)
log_w_flow = guide.log_weights(vae.model, bx_test, num_samples=tut.steps(100, 4))
elbo_gauss = float(gauss.elbo(bx_test, num_samples=tut.steps(100, 4), seed=0).mean())
iwae_gauss = float(gauss.log_likelihood(bx_test, num_samples=tut.steps(100, 4), seed=0).mean())
tut.record("vae_gaussian_test_elbo", elbo_gauss, fmt=".2f")
tut.record("vae_gaussian_test_iwae", iwae_gauss, fmt=".2f")
tut.record("vae_flow_test_elbo", float(log_w_flow.mean()), fmt=".2f")
tut.record("vae_flow_test_iwae", float(iwae_bound(log_w_flow).mean()), fmt=".2f")
iwae_flow = float(iwae_bound(log_w_flow).mean())
tut.check(
    "the importance-weighted bound is above the ELBO for both posteriors",
    iwae_gauss >= elbo_gauss and iwae_flow >= float(log_w_flow.mean()),
    f"Gaussian q: {iwae_gauss:.2f} >= {elbo_gauss:.2f}; "
    f"flow q: {iwae_flow:.2f} >= {float(log_w_flow.mean()):.2f}",
)
labels = ["Gaussian q", "flow q"]
axes[3].bar([f"{n}\nELBO" for n in labels], [elbo_gauss, float(log_w_flow.mean())], color="C0")
axes[3].bar(
    [f"{n}\nIWAE" for n in labels], [iwae_gauss, float(iwae_bound(log_w_flow).mean())], color="C1"
)
axes[3].set(title="VAE on binarised digits: test bounds", ylabel="nats / image")
axes[3].set_ylim(min(elbo_gauss, float(log_w_flow.mean())) - 5, None)
tut.save(fig, "flow_guide")
