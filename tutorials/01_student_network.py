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
import itertools

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
# eq. 5: p(x1=1 | x2=0) = p(x1=1) p(x2=0 | x1=1) / p(x2=0)
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
    tut.check_close(f"{question}: the library equals the hand computation", lib, hand, atol=1e-12)
tut.record("p(x2=1)", answers["p(x2=1)"][1], fmt=".6f")
tut.record("p(x1=1|x2=0)", answers["p(x1=1 | x2=0)"][1], fmt=".7f")
tut.record("p(x2=1,x3=1)", answers["p(x2=1, x3=1)"][1], fmt=".6f")
tut.record("p(x3=1|x2=1)", answers["p(x3=1 | x2=1)"][1], fmt=".7f")
# the notes' numbers: 0.695 (eq. 3), 0.25 x 0.90 / 0.305 ≈ 0.74 (eq. 5), 0.546 (eq. 6) and
# 0.546 / 0.695 ≈ 0.79 (eq. 7)
tut.check_close("p(x2=1) = 0.695 (eq. 3)", answers["p(x2=1)"][1], 0.695, atol=1e-12)
tut.check_close(
    "p(x1=1 | x2=0) = 0.25 x 0.90 / 0.305 (eq. 5)",
    answers["p(x1=1 | x2=0)"][1],
    0.25 * 0.90 / 0.305,
    atol=1e-12,
)
tut.check_close("p(x1=1 | x2=0) ≈ 0.74", answers["p(x1=1 | x2=0)"][1], 0.74, atol=0.005)
tut.check_close("p(x2=1, x3=1) = 0.546 (eq. 6)", answers["p(x2=1, x3=1)"][1], 0.546, atol=1e-12)
tut.check_close(
    "p(x3=1 | x2=1) = 0.546 / 0.695 (eq. 7)",
    answers["p(x3=1 | x2=1)"][1],
    0.546 / 0.695,
    atol=1e-12,
)
tut.check_close("p(x3=1 | x2=1) ≈ 0.79", answers["p(x3=1 | x2=1)"][1], 0.79, atol=0.005)

# %% [markdown]
# Note p(x2=1, x3=1) = 0.546 ≠ p(x2=1) p(x3=1): x2 and x3 are only independent
# *given* x1. And conditioning on the theory raises the chance of the practice:
# p(x3=1 | x2=1) ≈ 0.79 > p(x3=1).

# %%
p_x3 = net.query("x3")[1].item()
print(f"p(x2=1) p(x3=1) = {answers['p(x2=1)'][1] * p_x3:.4f}  vs  p(x2=1, x3=1) = 0.546")
print(f"p(x3=1) = {p_x3:.4f}  vs  p(x3=1 | x2=1) = {answers['p(x3=1 | x2=1)'][1]:.4f}")
product = answers["p(x2=1)"][1] * p_x3
tut.check(
    "p(x2=1, x3=1) differs from p(x2=1) p(x3=1): x2, x3 are dependent",
    abs(answers["p(x2=1, x3=1)"][1] - product) > 0.01,
    f"{answers['p(x2=1, x3=1)'][1]:.4f} vs {product:.4f}",
)
tut.check(
    "knowing the theory was right raises p(x3=1)",
    answers["p(x3=1 | x2=1)"][1] > p_x3 + 0.01,
    f"p(x3=1 | x2=1) = {answers['p(x3=1 | x2=1)'][1]:.4f} vs p(x3=1) = {p_x3:.4f}",
)

# %% [markdown]
# ## The independences of the factorisation, and what they save (eq. 1–2)
# The notes read two conditional independences off eq. 1: x2 ⟂ x3 | x1 (knowing whether
# the student studied, the theory says nothing more about the practice) and
# x1 ⟂ x4 | x2, x3 (knowing both answers, studying says nothing more about passing).
# The DAG implies them (d-separation, `is_independent`), and the joint table satisfies
# them: p(x2, x3 | x1) = p(x2 | x1) p(x3 | x1) and
# p(x1, x4 | x2, x3) = p(x1 | x2, x3) p(x4 | x2, x3) in every cell. They shrink the tables:
# p(x4 | x1, x2, x3) would need 2·2·2 = 8 rows, p(x4 | x2, x3) needs 4, and the network
# needs 1 + 2 + 2 + 4 = 9 free numbers against 2⁴ − 1 = 15 for the full joint table.

# %%
joint = net.query(["x1", "x2", "x3", "x4"])  # joint[x1, x2, x3, x4]
p123 = joint.sum(3)
p23_given_1 = p123 / p123.sum((1, 2), keepdim=True)
split = p23_given_1.sum(2, keepdim=True) * p23_given_1.sum(1, keepdim=True)
tut.check("the DAG implies x2 ⟂ x3 | x1", net.is_independent("x2", "x3", given="x1"))
tut.check("but not x2 ⟂ x3", not net.is_independent("x2", "x3"))
tut.check_close(
    "p(x2, x3 | x1) = p(x2 | x1) p(x3 | x1) in every cell", p23_given_1, split, atol=1e-12
)
p14_given_23 = joint / joint.sum((0, 3), keepdim=True)
split = p14_given_23.sum(3, keepdim=True) * p14_given_23.sum(0, keepdim=True)
tut.check("the DAG implies x1 ⟂ x4 | x2, x3", net.is_independent("x1", "x4", given=["x2", "x3"]))
tut.check("but not x1 ⟂ x4 given x2 alone", not net.is_independent("x1", "x4", given="x2"))
tut.check_close(
    "p(x1, x4 | x2, x3) = p(x1 | x2, x3) p(x4 | x2, x3) in every cell",
    p14_given_23,
    split,
    atol=1e-12,
)
rows_x4 = net.table("x4").numel() // net.cardinality("x4")
tut.record("rows of p(x4 | x2, x3)", rows_x4)
tut.check("p(x4 | x2, x3) has 4 rows, not the 8 of p(x4 | x1, x2, x3)", rows_x4 == 4 < 2**3)
tut.record("free parameters: network vs joint table", [net.n_parameters, net.n_parameters_joint])
tut.check(
    "the network needs 9 free numbers, the joint table 15",
    net.n_parameters == 1 + 2 + 2 + 4 and net.n_parameters_joint == 2**4 - 1,
    f"{net.n_parameters} vs {net.n_parameters_joint}",
)

# %% [markdown]
# ## Bayes' rule (eq. 5)
# p(x1 | x2) is not in the factorisation (it runs against the arrow), but
# p(x1=1 | x2=0) = p(x2=0 | x1=1) p(x1=1) / p(x2=0).

# %%
bayes = net.table("x2")[1, 0].item() * net.table("x1")[1].item() / net.query("x2")[0].item()
print(f"Bayes' rule: {bayes:.10f}   posterior query: {answers['p(x1=1 | x2=0)'][1]:.10f}")
tut.check_close(
    "Bayes' rule gives the posterior query (eq. 5)", bayes, answers["p(x1=1 | x2=0)"][1], atol=1e-12
)

# %% [markdown]
# Batched evidence answers many questions in one contraction, and the most probable
# explanation of a pass (max-product) is the expected one: studied, both parts right.

# %%
print("p(x1 = 1 | x4 = 0, 1):", net.query("x1", evidence={"x4": torch.tensor([0, 1])})[:, 1])
print("MPE given x4 = 1:", net.mpe({"x4": 1}))
print("MPE given x4 = 0:", net.mpe({"x4": 0}))
mpe_pass = net.mpe({"x4": 1})
tut.check(
    "the MPE of a pass: studied, theory and practice right",
    mpe_pass == {"x1": 1, "x2": 1, "x3": 1},
    str(mpe_pass),
)

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
    tut.check(
        f"sample frequencies of {title} within 4 standard errors",
        bool((np.abs(freq - exact) < 4 * se).all()),
        f"max |freq - exact| / se = {float((np.abs(freq - exact) / se).max()):.2f}",
    )
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
tut.check("posterior draws all have the evidence x4 = 0", bool((posterior_draws["x4"] == 0).all()))

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
tut.check(
    "EM never lowers the log-likelihood",
    all(b >= a - 1e-9 * abs(a) for h in result.restarts for a, b in itertools.pairwise(h)),
)
tut.check(  # maximum likelihood: at least the true tables' likelihood, up to EM's tolerance
    "the learned tables fit the data at least as well as the true ones",
    gap < 1e-6,
    f"relative gap {gap:.2e}",
)
se_obs = (exact_obs * (1 - exact_obs) / K).sqrt()
tut.check(
    "learned p(x2, x3, x4) within 4 standard errors of the true one",
    bool(((exact_obs - learned_obs).abs() < 4 * se_obs).all()),
    f"max |diff| / se = {float(((exact_obs - learned_obs).abs() / se_obs).max()):.2f}",
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
