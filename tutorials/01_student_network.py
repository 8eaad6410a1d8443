# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 01 · The student network: exact queries, sampling and learning with a hidden cause
#
# Notes, section 2.1.1. Four binary variables (1 = yes, 0 = no):
# x1 the student studies, x2 answers the theory well, x3 answers the practice well,
# x4 passes the course. The graph of Figura 1 factorises the joint as (eq. 1)
#
#     p(x1, x2, x3, x4) = p(x1) p(x2 | x1) p(x3 | x1) p(x4 | x2, x3),
#
# a special case of the Bayesian network p(x) = Π_n p(x_n | Pa(x_n)) (eq. 8).
# We answer the notes' four questions by hand (eq. 3–7) and with the library, check
# Bayes' rule (eq. 5), draw the DAG, sample, and learn the tables back from data in
# which whether the student studied (x1) is never observed.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import pyrobn
from pyrobn.datasets import student_samples
from pyrobn.plots import PALETTE
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "01_student_network",
    figures=["dag", "samples", "learning"],
    title="The student network: exact queries, sampling, learning with x1 hidden",
)
pyrobn.set_seed(0)
net = pyrobn.student_network()
print(net)
for name in net.variables:
    print(f"p({name} | {', '.join(net.parents(name)) or '-'}):\n{net.table(name).cpu().numpy()}")

# %% [markdown]
# The tables are the notes' (the rows of p(x4 | x2, x3) are listed there in the order
# (x2, x3) = (0,0), (1,0), (0,1), (1,1); here `table[x2, x3]` holds each row).
#
# ## The four questions by hand (eq. 3–7)
# Every answer is a sum over the full joint, which the factorisation lets us push
# inside: in eq. 3 the sums over x4 and x3 are sums of a distribution, hence 1.

# %%
p1 = net.table("x1").cpu().numpy()  # p(x1)
p2 = net.table("x2").cpu().numpy()  # p(x2 | x1)
p3 = net.table("x3").cpu().numpy()  # p(x3 | x1)

# eq. 3: p(x2=1) = Σ_x1 p(x1) p(x2=1 | x1)
by_hand_x2 = p1[0] * p2[0, 1] + p1[1] * p2[1, 1]
# eq. 4: p(x1=1 | x2=0) = p(x1=1) p(x2=0 | x1=1) / p(x2=0)
by_hand_x1_given_x2 = p1[1] * p2[1, 0] / (1 - by_hand_x2)
# eq. 6: p(x2=1, x3=1) = Σ_x1 p(x1) p(x2=1 | x1) p(x3=1 | x1)
by_hand_x2x3 = p1[0] * p2[0, 1] * p3[0, 1] + p1[1] * p2[1, 1] * p3[1, 1]
# eq. 7: p(x3=1 | x2=1) = p(x2=1, x3=1) / p(x2=1)
by_hand_x3_given_x2 = by_hand_x2x3 / by_hand_x2

# %% [markdown]
# ## The same questions with the library
# `query` gives a whole table, `probability` one number; both run a compiled
# log-space (or, when it cannot underflow, linear-space) variable elimination.

# %%
answers = {
    "p(x2=1)": (by_hand_x2, net.query("x2")[1].item()),
    "p(x1=1 | x2=0)": (by_hand_x1_given_x2, net.query("x1", evidence={"x2": 0})[1].item()),
    "p(x2=1, x3=1)": (by_hand_x2x3, net.probability({"x2": 1, "x3": 1})),
    "p(x3=1 | x2=1)": (by_hand_x3_given_x2, net.probability({"x3": 1}, evidence={"x2": 1})),
}
for question, (hand, lib) in answers.items():
    print(f"{question:16s} by hand {hand:.10f}   library {lib:.10f}")
    assert abs(hand - lib) < 1e-12
tut.record("p(x2=1)", answers["p(x2=1)"][1], fmt=".6f")
tut.record("p(x1=1|x2=0)", answers["p(x1=1 | x2=0)"][1], fmt=".7f")
tut.record("p(x2=1,x3=1)", answers["p(x2=1, x3=1)"][1], fmt=".6f")
tut.record("p(x3=1|x2=1)", answers["p(x3=1 | x2=1)"][1], fmt=".7f")

# %% [markdown]
# Note p(x2=1, x3=1) = 0.546 ≠ p(x2=1) p(x3=1): x2 and x3 are only independent
# *given* x1. And conditioning on the theory raises the chance of the practice:
# p(x3=1 | x2=1) ≈ 0.79 > p(x3=1).

# %%
p_x3 = net.query("x3")[1].item()
print(f"p(x2=1) p(x3=1) = {answers['p(x2=1)'][1] * p_x3:.4f}  vs  p(x2=1, x3=1) = 0.546")
print(f"p(x3=1) = {p_x3:.4f}  vs  p(x3=1 | x2=1) = {answers['p(x3=1 | x2=1)'][1]:.4f}")

# %% [markdown]
# ## Bayes' rule (eq. 5)
# p(x1 | x2) is not in the factorisation (it runs against the arrow), but
# p(x1=1 | x2=0) = p(x2=0 | x1=1) p(x1=1) / p(x2=0).

# %%
bayes = net.table("x2")[1, 0].item() * net.table("x1")[1].item() / net.query("x2")[0].item()
print(f"Bayes' rule: {bayes:.10f}   posterior query: {answers['p(x1=1 | x2=0)'][1]:.10f}")
assert abs(bayes - answers["p(x1=1 | x2=0)"][1]) < 1e-12

# %% [markdown]
# Batched evidence answers many questions in one contraction, and the most probable
# explanation of a pass (max-product) is the expected one: studied, both parts right.

# %%
print("p(x1 = 1 | x4 = 0, 1):", net.query("x1", evidence={"x4": torch.tensor([0, 1])})[:, 1])
print("MPE given x4 = 1:", net.mpe({"x4": 1}))
print("MPE given x4 = 0:", net.mpe({"x4": 0}))

# %% [markdown]
# ## The DAG (Figura 1)

# %%
fig, ax = plt.subplots(figsize=(4.5, 4.2))
net.plot(
    ax=ax,
    labels={"x1": "studies", "x2": "theory right", "x3": "practice right", "x4": "passes"},
    title="Figura 1: the student network",
)
tut.save(fig, "dag")

# %% [markdown]
# ## Sampling
# Ancestral sampling draws x1, then x2 and x3 given x1, then x4 given (x2, x3).
# Given evidence, `sample` draws exactly from the posterior by forward filtering and
# backward sampling (no rejection). The bars are sample frequencies with 4 standard
# errors; the dots the exact probabilities.

# %%
n = tut.steps(full=20_000, smoke=2_000)
prior_draws = net.sample(n, seed=0)
posterior_draws = net.sample(n, evidence={"x4": 0}, seed=1)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for ax, draws, evidence, title in (
    (axes[0], prior_draws, {}, "p(x_n = 1)"),
    (axes[1], posterior_draws, {"x4": 0}, "p(x_n = 1 | x4 = 0)"),
):
    names = [v for v in net.variables if v not in evidence]
    freq = np.array([draws[v].float().mean().item() for v in names])
    exact = np.array([net.query(v, evidence=evidence)[1].item() for v in names])
    se = np.sqrt(exact * (1 - exact) / n)
    ax.bar(names, freq, color=PALETTE[0], alpha=0.7, yerr=4 * se, capsize=4, label="samples")
    ax.plot(names, exact, "o", color=PALETTE[1], label="exact")
    ax.set_title(f"{title}, {n} draws")
    ax.set_ylim(0, 1)
axes[0].legend(loc="lower center")
tut.save(fig, "samples")
worst = max(
    abs(prior_draws[v].float().mean().item() - net.query(v)[1].item()) for v in net.variables
)
tut.record("largest sample-frequency error (prior)", worst, fmt=".4f")

# %% [markdown]
# ## Learning the tables with x1 hidden (eq. 28–31 and EM)
# With every variable observed, the MLE is a ratio of counts (eq. 31). Here x1 is
# never observed: `fit` maximises the marginal likelihood Σ_k log Σ_{x1} p(x1, x2^k,
# x3^k, x4^k) by EM (the E-step's expected counts are the gradient of the exact
# log-likelihood with respect to the log-tables), from several random starts.
#
# A hidden variable's states have no names in the data: the learned x1 may come out
# with its two states swapped, and only the distribution of the observed variables is
# identified, so we compare log-likelihoods, not tables.

# %%
K = tut.steps(full=20_000, smoke=3_000)
data = student_samples(K, seed=0, hidden="x1")
true_ll = net.log_prob(data).sum().item()
learner = pyrobn.student_network()
result = learner.fit(data, restarts=tut.steps(full=5, smoke=2), seed=0).fit_result_
gap = (true_ll - result.final_objective) / abs(true_ll)
print(f"log-likelihood, true tables: {true_ll:.2f}; learned: {result.final_objective:.2f}")
print(f"EM iterations of the best restart: {result.n_iter}")
tut.record("log-likelihood true", true_ll, fmt=".2f")
tut.record("log-likelihood learned", result.final_objective, fmt=".2f")
tut.record("relative gap (true - learned)/|true|", gap, fmt=".2e")
exact_obs = net.query(["x2", "x3", "x4"]).flatten()
learned_obs = learner.query(["x2", "x3", "x4"]).flatten()
tut.record(
    "max |p(x2,x3,x4) learned - true|", (exact_obs - learned_obs).abs().max().item(), fmt=".4f"
)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for i, history in enumerate(result.restarts):
    axes[0].plot(history, color=PALETTE[i % len(PALETTE)], label=f"restart {i}")
axes[0].axhline(true_ll, color="black", ls="--", lw=1, label="true tables")
axes[0].set_xlabel("EM iteration")
axes[0].set_ylabel("log-likelihood Σ_k log p(x2, x3, x4)")
axes[0].set_ylim(true_ll - 0.05 * abs(true_ll), true_ll + 0.01 * abs(true_ll))
axes[0].legend(fontsize=8)
labels = [f"{a}{b}{c}" for a in "01" for b in "01" for c in "01"]
x = np.arange(8)
axes[1].bar(x - 0.2, exact_obs.cpu().numpy(), 0.4, color=PALETTE[0], label="true")
axes[1].bar(x + 0.2, learned_obs.cpu().numpy(), 0.4, color=PALETTE[2], label="learned")
axes[1].set_xticks(x, labels)
axes[1].set_xlabel("(x2, x3, x4)")
axes[1].set_title("p(x2, x3, x4): true vs learned with x1 hidden")
axes[1].legend()
tut.save(fig, "learning")
