# %% [markdown]
# # 11 · MAP, weight decay and the LASSO (notes 2.3.1, eq. 25-28; 2.4.1.3)
#
# MAP picks the mode of the posterior over the parameters (eq. 25-26):
# theta_MAP = argmax log p(D | theta) + log p(theta). A Gaussian prior N(0, 1/lambda)
# adds -(lambda/2)||theta||^2 (eq. 27): l2 regularisation, PyTorch's `weight_decay`
# (2.3.1.1). A Laplace prior adds -lambda ||theta||_1: the LASSO. A flat prior gives back
# maximum likelihood (eq. 28), which for linear regression is the pseudo-inverse (2.4.1.3).
#
# In pyrobn a prior is one line, `weight_decay_prior(module, lam)`, and MAP is
# `map_estimate(model, *data)`: an `AutoDelta` guide trained by `fit_svi` (Adam), then
# polished by L-BFGS, with a stated convergence criterion (the largest gradient entry of
# -log p(D, theta) below sqrt(eps) max(1, |log p|); a `ConvergenceWarning` otherwise). Each
# call keeps its parameters under a name of its own in Pyro's param store, so two fits
# never share a starting point and no `pyro.clear_param_store()` is needed.

# %%
import matplotlib.pyplot as plt
import pyro
import pyro.distributions as dist
import torch
from sklearn.linear_model import Lasso

import pyrobn
from pyrobn.infer import map_estimate, weight_decay_prior
from pyrobn.plots import PALETTE
from pyrobn.random import seeded
from pyrobn.tutorial import Tutorial

tut = Tutorial("11_map_weight_decay", figures=["paths", "posterior", "network"])
torch.set_num_threads(1)
device = pyrobn.device()

# %% [markdown]
# ## Linear regression with correlated features
# y = theta^T x + eps, eps ~ N(0, s^2), with s = 0.5 and two strongly correlated features.

# %%
N, s = 60, 0.5
g = torch.Generator().manual_seed(0)
X = torch.randn(N, 3, generator=g, dtype=torch.float64)
X[:, 1] = 0.9 * X[:, 0] + 0.44 * X[:, 1]
theta_true = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)
y = X @ theta_true + s * torch.randn(N, generator=g, dtype=torch.float64)
X, y = X.to(device), y.to(device)

# %% [markdown]
# ## MAP = closed forms (eq. 27-28)
# `map_estimate` runs Adam on the log joint, then L-BFGS; the closed forms are the ridge
# solve (X^T X + s^2 lambda I)^-1 X^T y, the pseudo-inverse X^+ y, and scikit-learn's Lasso
# at alpha = s^2 lambda / N. The smooth objectives (Normal and flat priors) converge to
# machine precision and say so (`fit.converged`); the LASSO's log joint has a kink wherever
# a coefficient is 0, where no gradient criterion holds, so `map_estimate` warns that it
# cannot certify that point (the closed form, FISTA, is the way to the LASSO).

# %%
steps = tut.steps(600, 200)
lam = 20.0
errors = {}
for prior in ["normal", "flat", "laplace"]:
    blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, prior=prior, lam=lam).to(device)
    fit = map_estimate(blr, X, y, steps=steps, lr=0.1, final_lr=1e-5)
    errors[prior] = float((fit["theta"] - blr.map(X, y)).abs().max())
    tut.record(f"max |MAP(AutoDelta) - closed form| ({prior})", errors[prior], fmt=".2e")
    # the LASSO's objective has kinks at 0: no gradient criterion certifies its mode, and
    # Adam approaches the kink slowly (max error 1.5e-3 after 200 steps, 1.6e-4 after 600)
    tolerance = 1e-2 if prior == "laplace" else 1e-6
    if prior != "laplace":
        tut.check(f"MAP converged by its criterion ({prior})", fit.converged is True)
    tut.check(
        f"MAP = closed form ({prior})",
        errors[prior] < tolerance,
        f"max |MAP - closed form| = {errors[prior]:.2e} < {tolerance:g}",
    )
lasso = Lasso(alpha=s**2 * lam / N, fit_intercept=False, tol=1e-12, max_iter=100_000)
lasso_coef = torch.from_numpy(lasso.fit(X.cpu().numpy(), y.cpu().numpy()).coef_)
blr_l1 = pyrobn.BayesianLinearRegression(3, noise_scale=s, prior="laplace", lam=lam)
fista_gap = float((blr_l1.map(X.cpu(), y.cpu()) - lasso_coef).abs().max())
tut.record("max |FISTA MAP - sklearn Lasso|", fista_gap, fmt=".2e")
tut.check("LASSO MAP = scikit-learn's Lasso", fista_gap < 1e-6, f"{fista_gap:.2e}")

# %% [markdown]
# ## Weight decay in `torch.optim`
# Minimising the mean NLL (1/N) sum (y - x theta)^2 / 2s^2 (the notes' normalised loss, 2.4.4)
# with `weight_decay = lambda / N` has the same minimiser as MAP with N(0, 1/lambda).

# %%
theta = torch.zeros(3, dtype=torch.float64, device=device, requires_grad=True)
optim = torch.optim.SGD([theta], lr=0.2, momentum=0.9, weight_decay=lam / N)
for _ in range(tut.steps(3000, 1500)):
    optim.zero_grad()
    (((y - X @ theta) ** 2).mean() / (2 * s**2)).backward()
    optim.step()
ridge = pyrobn.mle.ridge(X, y, lam, s)
sgd_gap = float((theta.detach() - ridge).abs().max())
tut.record("max |SGD(weight_decay=lam/N) - ridge|", sgd_gap, fmt=".2e")
tut.check("weight_decay = lam / N gives the ridge solution", sgd_gap < 1e-6, f"{sgd_gap:.2e}")

# %% [markdown]
# ## Regularisation paths
# Ridge shrinks every coefficient smoothly; the LASSO sets them to exactly zero one by one.

# %%
lams = torch.logspace(-1, 3, tut.steps(40, 10)).tolist()
ridge_path = torch.stack([pyrobn.mle.ridge(X, y, lam_i, s).cpu() for lam_i in lams])
lasso_path = torch.stack(
    [
        pyrobn.BayesianLinearRegression(3, noise_scale=s, prior="laplace", lam=lam_i).map(
            X.cpu(), y.cpu()
        )
        for lam_i in lams
    ]
)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, path, title in [
    (axes[0], ridge_path, "Normal prior (ridge)"),
    (axes[1], lasso_path, "Laplace prior (LASSO)"),
]:
    for j in range(3):
        ax.semilogx(lams, path[:, j], color=PALETTE[j], label=f"theta[{j}]")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("prior precision lambda")
    ax.set_title(title)
axes[0].set_ylabel("MAP coefficient")
axes[0].legend()
tut.save(fig, "paths")
tut.check(
    "the LASSO sets coefficients exactly to zero, ridge does not",
    bool((lasso_path[-1] == 0).all()) and bool((ridge_path != 0).all()),
    f"at lambda = {lams[-1]:g}: LASSO {lasso_path[-1].tolist()}, ridge {ridge_path[-1].tolist()}",
)

# %% [markdown]
# ## The exact posterior, its mode and the MLE
# With the Gaussian prior the posterior is Gaussian: precision A = X^T X / s^2 + lambda I,
# mean = the MAP. The correlated features give a long, tilted ellipse.

# %%
blr = pyrobn.BayesianLinearRegression(3, noise_scale=s, prior="normal", lam=lam)
post = blr.posterior(X.cpu(), y.cpu())
mean2, cov2 = post.mean[:2], post.covariance_matrix[:2, :2]
grid = torch.linspace(-1.5, 1.5, 200, dtype=torch.float64)
a, b = torch.meshgrid(
    mean2[0] + grid * 2 * cov2[0, 0].sqrt(), mean2[1] + grid * 2 * cov2[1, 1].sqrt(), indexing="ij"
)
points = torch.stack([a, b], -1)
density = dist.MultivariateNormal(mean2, cov2).log_prob(points).exp()
mle = blr.mle(X.cpu(), y.cpu())
fig, ax = plt.subplots(figsize=(5.5, 4.5))
ax.contour(a, b, density, levels=8, cmap="Blues")
ax.plot(*mean2, "o", color=PALETTE[1], label="MAP = posterior mean")
ax.plot(*mle[:2], "s", color=PALETTE[2], label="MLE (pseudo-inverse)")
ax.plot(*theta_true[:2], "*", color="black", ms=12, label="truth")
ax.set_xlabel("theta[0]")
ax.set_ylabel("theta[1]")
ax.legend(fontsize=8)
ax.set_title("p(theta | D), lambda = 20")
tut.save(fig, "posterior")
correlation = float(cov2[0, 1] / (cov2[0, 0] * cov2[1, 1]).sqrt())
tut.record("posterior correlation of theta[0], theta[1]", correlation, fmt=".3f")
tut.check("correlated features, negatively correlated coefficients", correlation < -0.5)
tut.check_close(
    "MAP = posterior mean (Gaussian prior)", post.mean, blr.map(X.cpu(), y.cpu()), atol=1e-10
)

# %% [markdown]
# ## One line for any network
# `weight_decay_prior(net, lam)` makes every weight a sample site with prior N(0, 1/lambda);
# `map_estimate` then trains the network with weight decay. A small MLP on 25 noisy
# points: with a nearly flat prior (lambda = 1e-3, the MLE limit) it overfits, weight decay
# (lambda = 0.5) keeps it smooth.

# %%
x_train = torch.linspace(-1, 1, 25, dtype=torch.float64).unsqueeze(-1)
t_train = torch.sin(3 * x_train).squeeze(-1) + 0.2 * torch.randn(
    25, generator=g, dtype=torch.float64
)
x_plot = torch.linspace(-1.1, 1.1, 200, dtype=torch.float64).unsqueeze(-1)
curves = {}
for label, lam_net in [
    ("nearly flat prior, lambda = 1e-3", 1e-3),
    ("weight decay, lambda = 0.5", 0.5),
]:
    with seeded(1):  # the same initial weights for both priors
        net = torch.nn.Sequential(
            torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        ).double()
    weight_decay_prior(net, lam=lam_net)

    def model(x, t, net=net):
        mean = net(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("t", dist.Normal(mean, 0.2), obs=t)

    point = map_estimate(
        model, x_train, t_train, steps=tut.steps(3000, 200), lr=0.02, final_lr=1e-4
    )
    with torch.no_grad():
        curves[label] = point.condition(lambda net=net: net(x_plot))().squeeze(-1)
fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(x_train, t_train, "o", color="black", ms=4, label="data")
for i, (label, curve) in enumerate(curves.items()):
    ax.plot(x_plot, curve, color=PALETTE[i], label=label)
ax.set_xlabel("x")
ax.set_ylabel("t")
ax.legend(fontsize=8)
tut.save(fig, "network")
roughness = {k: float(v.diff(2).abs().sum()) for k, v in curves.items()}
tut.record("curve roughness (sum |second difference|)", roughness)
if not tut.smoke:  # after 3000 steps the nearly flat prior has fitted the noise
    flat, decayed = roughness.values()
    tut.check("weight decay gives a smoother curve", decayed < flat, f"{decayed:.3f} < {flat:.3f}")
