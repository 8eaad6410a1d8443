# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 06 · Naive Bayes: a generative classifier, supervised and semi-supervised
#
# Notes, section 2.1.3.2, eq. 10 and Figura 3. Naive Bayes is the Bayesian network in
# which the class y is the only parent of every feature:
#
# p(x, y) = p(y) ∏_d p(x_d | y)                                            (eq. 10)
#
# It learns the joint p(x, y) (it is *generative*) and classifies with Bayes' rule,
# p(y | x) = p(x, y) / Σ_c p(x, c), computed in log space. Each p(x_d | y) depends on
# the kind of feature: Gaussian, Bernoulli or categorical. Fitting is closed form
# (counts and means), and because the model is generative, rows *without* a label still
# carry information: their label is a latent variable that the Pyro model enumerates,
# and `fit` maximises the marginal likelihood Σ_y p(x, y) of those rows.

# %%
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pyro
import torch
from pyro.infer import TraceEnum_ELBO
from sklearn.datasets import load_digits, load_iris
from sklearn.naive_bayes import BernoulliNB, GaussianNB

import pyrobn
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "06_naive_bayes",
    figures=["figura3_dag", "decision_regions", "digit_templates", "semi_supervised", "em_vs_svi"],
    title="Naive Bayes (eq. 10): closed form, scikit-learn parity, semi-supervised EM",
)
pyrobn.set_seed(0)
device = pyrobn.device()

# %% [markdown]
# ## Gaussian features: the iris flowers
# p(x_d | y = c) = N(μ_cd, σ²_cd): the MLE is the class mean and variance. scikit-learn's
# GaussianNB adds ε = 10⁻⁹ · max_d Var(x_d) to every variance; pyrobn does the same
# (`var_smoothing`), so the two give the same posteriors.

# %%
X, y = load_iris(return_X_y=True)
nb = pyrobn.NaiveBayes("gaussian").fit(torch.as_tensor(X, device=device), y)
ref = GaussianNB().fit(X, y)
diff = np.abs(nb.predict_proba(X).cpu().numpy() - ref.predict_proba(X)).max()
tut.record("iris_max_abs_diff_vs_sklearn", float(diff), fmt=".2e")
tut.record("iris_train_accuracy", nb.score(X, y), fmt=".3f")
tut.check(
    "Gaussian NB: the same posteriors as scikit-learn's GaussianNB",
    diff < 1e-9,
    f"max |p(y | x) difference| = {diff:.2e}",
)
tut.check_close(
    "Gaussian NB: the same training accuracy as scikit-learn",
    nb.score(X, y),
    ref.score(X, y),
    atol=1e-12,
)

# %% [markdown]
# ## Figura 3: the DAG, its independences and its size
# y is the only parent of every x_d: x_i ⟂ x_j | y (d-separation, the "naive" assumption),
# but not without y. The factorisation needs C − 1 + Σ_d (parameters of p(x_d | y))
# numbers; for discrete features the full joint table would need C ∏_d V_d − 1.

# %%
fig, ax = plt.subplots(figsize=(5, 3))
nb.plot_graph(ax=ax)
tut.save(fig, "figura3_dag")
dag = nb.graph()
tut.check("the features are independent given y", dag.d_separated("x1", "x2", given=["y"]))
tut.check("but not without y", not dag.d_separated("x1", "x2"))
tut.record("iris_n_parameters", nb.n_parameters)  # 2 + 4 features x 3 classes x (mean, var)
tut.check(
    "iris: 2 + 4 features x 3 classes x (mean, variance) = 26 parameters",
    nb.n_parameters == 2 + 4 * 3 * 2,
    f"n_parameters = {nb.n_parameters}",
)

# two features, to draw the decision regions argmax_c p(c | x)
X2 = X[:, 2:4]
nb2 = pyrobn.NaiveBayes("gaussian").fit(X2, y)
grid = np.stack(np.meshgrid(np.linspace(0.5, 7.5, 300), np.linspace(-0.2, 2.8, 300)), -1)
proba = nb2.predict_proba(grid.reshape(-1, 2)).cpu().numpy().reshape(300, 300, 3)
fig, ax = plt.subplots(figsize=(6, 4.5))
ax.imshow(proba, origin="lower", extent=(0.5, 7.5, -0.2, 2.8), aspect="auto", alpha=0.55)
for c, name in enumerate(["setosa", "versicolor", "virginica"]):
    ax.scatter(*X2[y == c].T, s=12, label=name, edgecolor="k", linewidth=0.3,
               color=plt.cm.brg(c / 2))  # fmt: skip
ax.set(xlabel="petal length (cm)", ylabel="petal width (cm)",
       title="Gaussian naive Bayes: p(y | x) as colour")  # fmt: skip
ax.legend(loc="upper left")
tut.save(fig, "decision_regions")

# %% [markdown]
# ## Bernoulli features: ink or no ink in 8×8 digits
# p(x_d = 1 | y = c) = (N_cd + α) / (N_c + 2α), the MAP estimate under a
# Beta(α + 1, α + 1) prior (add-α smoothing, the same as scikit-learn's BernoulliNB).
# The learned parameters are one "template" image per digit.

# %%
Xd, yd = load_digits(return_X_y=True)
perm = np.random.default_rng(0).permutation(len(yd))
train, test = perm[: 2 * len(yd) // 3], perm[2 * len(yd) // 3 :]
# pyrobn names the prior by its concentration c (MAP adds c − 1 pseudo-counts): c = 2 is
# scikit-learn's alpha = 1, and `alpha=` is accepted as scikit-learn's alias.
bern = pyrobn.NaiveBayes("bernoulli", concentration=2.0, binarize=4.0).fit(Xd[train], yd[train])
ref = BernoulliNB(alpha=1.0, binarize=4.0).fit(Xd[train], yd[train])
diff = np.abs(bern.predict_proba(Xd[test]).cpu().numpy() - ref.predict_proba(Xd[test])).max()
tut.record("digits_bernoulli_max_abs_diff_vs_sklearn", float(diff), fmt=".2e")
tut.record("digits_bernoulli_test_accuracy", bern.score(Xd[test], yd[test]), fmt=".3f")
tut.check(
    "Bernoulli NB: the same posteriors as scikit-learn's BernoulliNB",
    diff < 1e-9,
    f"max |p(y | x) difference| = {diff:.2e}",
)
cat = pyrobn.NaiveBayes("categorical", alpha=1.0, n_categories=17).fit(Xd[train], yd[train])
tut.record("digits_categorical_test_accuracy", cat.score(Xd[test], yd[test]), fmt=".3f")
# 64 pixels with 17 levels: the factorisation needs 10 x 64 x 16 + 9 numbers, the joint table
# 10 x 17^64 - 1 (about 10^79)
tut.record("digits_categorical_n_parameters", cat.n_parameters)
tut.check(
    "digits: the factorisation needs 10 x 64 x 16 + 9 numbers",
    cat.n_parameters == 10 * 64 * 16 + 9,
    f"n_parameters = {cat.n_parameters}",
)
tut.check(
    "the joint table needs 10 x 17^64 - 1 (about 10^79)",
    cat.n_parameters_joint == 10 * 17**64 - 1 and 10**79 < cat.n_parameters_joint < 10**80,
    f"n_parameters_joint = {cat.n_parameters_joint:.3e}",
)

fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for c, ax in enumerate(axes):
    ax.imshow(bern.b_log_p[c].exp().cpu().reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(f"y = {c}", fontsize=8)
    ax.axis("off")
fig.suptitle("p(pixel on | y): the Bernoulli parameters", fontsize=9)
tut.save(fig, "digit_templates")

# %% [markdown]
# ## Semi-supervised learning: labels are latent variables
# With a label missing (y = -1), the row contributes log p(x) = log Σ_c p(x, c). `fit`
# maximises
#
# log p(θ) + Σ_labelled log p(x, y | θ) + Σ_unlabelled log Σ_c p(x, c | θ)
#
# by EM: the E-step computes p(c | x) by Bayes' rule, the M-step re-counts with those
# soft weights (closed form). On data drawn from a Gaussian naive Bayes model (5 classes,
# 20 features), we keep a fraction of the labels and compare with the supervised fit on
# the labelled rows alone.


# %%
def synthetic(n: int, seed: int = 0, n_classes: int = 5, n_features: int = 20):
    g = torch.Generator().manual_seed(seed)
    means = 0.5 * torch.randn(n_classes, n_features, generator=g, dtype=torch.float64)
    scales = 0.5 + torch.rand(n_classes, n_features, generator=g, dtype=torch.float64)
    labels = torch.randint(0, n_classes, (n,), generator=g)
    data = means[labels] + scales[labels] * torch.randn(n, n_features, generator=g,
                                                        dtype=torch.float64)  # fmt: skip
    return data.to(device), labels.to(device)


def hide(labels: torch.Tensor, keep: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = labels.clone()
    out[torch.randperm(len(labels), generator=g)[int(keep * len(labels)) :].to(labels.device)] = -1
    return out


Xs, ys = synthetic(2000)
Xs_train, ys_train, Xs_test, ys_test = Xs[:1000], ys[:1000], Xs[1000:], ys[1000:]
fractions = [0.02, 0.05, 0.1, 0.3] if not tut.smoke else [0.05, 0.3]
repeats = tut.steps(full=5, smoke=1)
sup_acc, semi_acc = np.zeros((len(fractions), repeats)), np.zeros((len(fractions), repeats))
for i, frac in enumerate(fractions):
    for r in range(repeats):
        partial = hide(ys_train, frac, seed=100 + r)
        seen = partial >= 0
        sup_acc[i, r] = (
            pyrobn.NaiveBayes(n_classes=5)
            .fit(Xs_train[seen], partial[seen])
            .score(Xs_test, ys_test)
        )
        semi_acc[i, r] = (
            pyrobn.NaiveBayes(n_classes=5).fit(Xs_train, partial).score(Xs_test, ys_test)
        )
oracle = pyrobn.NaiveBayes().fit(Xs_train, ys_train).score(Xs_test, ys_test)
k5 = fractions.index(0.05)
tut.record("synthetic_5pct_supervised_accuracy", sup_acc[k5].mean(), fmt=".3f")
tut.record("synthetic_5pct_semi_supervised_accuracy", semi_acc[k5].mean(), fmt=".3f")
tut.record("synthetic_all_labels_accuracy", oracle, fmt=".3f")
tut.check(
    "5% of the labels: semi-supervised beats supervised by 5 points",
    semi_acc[k5].mean() > sup_acc[k5].mean() + 0.05,
    f"test accuracy {semi_acc[k5].mean():.3f} vs {sup_acc[k5].mean():.3f}",
)

# the same on a real dataset: digits with Bernoulli features, 5% of the labels
partial = hide(torch.as_tensor(yd[train]), 0.05, seed=7)
seen = (partial >= 0).numpy()
sup_digits = pyrobn.NaiveBayes("bernoulli", binarize=4.0, n_classes=10)
sup_digits.fit(Xd[train][seen], yd[train][seen])
semi_digits = pyrobn.NaiveBayes("bernoulli", binarize=4.0, n_classes=10).fit(Xd[train], partial)
tut.record("digits_5pct_supervised_accuracy", sup_digits.score(Xd[test], yd[test]), fmt=".3f")
tut.record("digits_5pct_semi_supervised_accuracy", semi_digits.score(Xd[test], yd[test]),
           fmt=".3f")  # fmt: skip
tut.check(
    "digits, 5% of the labels: semi-supervised beats supervised",
    semi_digits.score(Xd[test], yd[test]) > sup_digits.score(Xd[test], yd[test]),
    f"test accuracy {semi_digits.score(Xd[test], yd[test]):.3f} "
    f"vs {sup_digits.score(Xd[test], yd[test]):.3f}",
)

fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(
    fractions, sup_acc.mean(1), sup_acc.std(1), marker="o", label="supervised (labelled rows)"
)
ax.errorbar(fractions, semi_acc.mean(1), semi_acc.std(1), marker="s",
            label="semi-supervised (EM, all rows)")  # fmt: skip
ax.axhline(oracle, color="gray", ls="--", label="all labels")
ax.set_xscale("log")
ax.set_xticks(fractions, [f"{f:.0%}" for f in fractions])
ax.minorticks_off()
ax.set(xlabel="fraction of labelled rows", ylabel="test accuracy",
       title="Gaussian naive Bayes on data it fits")  # fmt: skip
ax.legend()
tut.save(fig, "semi_supervised")

# %% [markdown]
# ## The Pyro model/guide pair: EM and SVI optimise the same objective
# `NaiveBayes.model` samples θ from its priors (Dirichlet/Beta for the discrete
# features, flat for the Gaussians), observes the labelled rows and *enumerates* the
# missing labels (`infer={"enumerate": "parallel"}`); `guide` puts a point mass on θ.
# The ELBO of `TraceEnum_ELBO` is then exactly the objective above: the labels are summed
# out, not sampled. `fit(..., method="svi")` climbs it with Adam through
# `pyrobn.infer.fit_svi`; EM gets there in a few closed-form steps.

# %%
Xm, ym = synthetic(300, seed=1, n_classes=3, n_features=4)
ym_missing = hide(ym, 0.1, seed=3)
em = pyrobn.NaiveBayes(n_classes=3, var_smoothing=0.0).fit(Xm, ym_missing)
pyro.clear_param_store()
elbo = -TraceEnum_ELBO(max_plate_nesting=1).loss(em.model, em.guide, Xm, ym_missing)
tut.record("elbo_at_em_solution", elbo, fmt=".6f")
tut.record("log_joint_at_em_solution", float(em.log_joint(Xm, ym_missing)), fmt=".6f")
tut.check_close(
    "the ELBO of TraceEnum_ELBO is the EM objective",
    elbo,
    em.log_joint(Xm, ym_missing),
    rtol=1e-8,
)
tut.check(
    "fit used EM and converged",
    em.fit_result_.method == "em" and em.fit_result_.converged,
    f"method {em.fit_result_.method}, converged {em.fit_result_.converged}",
)
tut.check(
    "EM never lowers the objective",
    all(b >= a - 1e-9 * abs(a) for a, b in itertools.pairwise(em.fit_result_.objective)),
)
svi = pyrobn.NaiveBayes(n_classes=3, var_smoothing=0.0)
svi.fit(Xm, ym_missing, method="svi", steps=tut.steps(full=600, smoke=40), lr=0.05)
tut.record("svi_final_log_joint", float(svi.log_joint(Xm, ym_missing)), fmt=".6f")
tut.check(
    "SVI does not climb above EM's maximum",
    float(svi.log_joint(Xm, ym_missing)) <= em.fit_result_.final_objective + 1e-6,
    f"SVI {float(svi.log_joint(Xm, ym_missing)):.6f} vs EM {em.fit_result_.final_objective:.6f}",
)
if not tut.smoke:  # 40 smoke steps of Adam stop short
    svi_objective = float(svi.log_joint(Xm, ym_missing))
    tut.check(
        "SVI reaches EM's maximum",
        em.fit_result_.final_objective - svi_objective < 1e-4,
        f"SVI {svi_objective:.6f} vs EM {em.fit_result_.final_objective:.6f}",
    )

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(svi.fit_result_.objective, label="SVI (TraceEnum_ELBO, Adam)")
em_trace = em.fit_result_.objective
ax.plot(np.arange(len(em_trace)), em_trace, "o-", label="EM iterations (run_em)")
ax.set(xlabel="step / iteration", ylabel="log p(θ) + log p(data | θ)",
       title="one objective, two optimisers", xscale="symlog")  # fmt: skip
ax.legend()
tut.save(fig, "em_vs_svi")
