# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # 13 · A real network: ALARM from its file, diagnosis, scenarios, MPE, do(), learning
#
# Notes, section 2.1: a Bayesian network p(x) = Π_n p(x_n | Pa(x_n)) (eq. 8) answers
# every question about its variables exactly (eq. 3-7). The student network has four
# variables; ALARM (Beinlich et al., 1989), a monitoring network for patients in
# intensive care, has 37 and is one of the standard networks of the bnlearn repository.
# We read it from its BIF file (the copy pgmpy ships), look at its DAG and at what it
# saves against the full joint table, ask diagnostic questions, answer a grid of
# scenarios in one call, find the most probable explanation, separate observing from
# intervening, and learn its 509 free parameters back from data with a fifth of the
# entries missing.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

import pyrobn
from pyrobn.models.bayesnet.formats import bnlearn_path
from pyrobn.plots import PALETTE
from pyrobn.tutorial import Tutorial

tut = Tutorial(
    "13_real_networks",
    figures=["dag", "diagnosis", "scenarios", "learning"],
    title="ALARM: a real network from its file, exact queries, MPE, do(), EM",
)
start = time.perf_counter()
net = pyrobn.read_network(bnlearn_path("alarm"), device="cpu")
read_ms = (time.perf_counter() - start) * 1e3
jt = net.junction_tree()
print(f"{len(net.variables)} variables, read in {read_ms:.0f} ms")
print(f"free parameters: {net.n_parameters} (the full joint table: {net.n_parameters_joint:.3g})")
print(f"junction tree: {len(jt.cliques)} cliques, treewidth bound {jt.width}, {jt.size} entries")
tut.record("variables", len(net.variables))
tut.record("free parameters", net.n_parameters)
tut.record("free parameters of the full joint", float(net.n_parameters_joint), fmt=".3g")
free_entries = sum(net.table(v)[..., :-1].numel() for v in net.variables)
n_edges = len(net.graph().edges)
tut.check(
    "ALARM has 37 variables and 46 edges",
    len(net.variables) == 37 and n_edges == 46,
    f"{len(net.variables)} variables, {n_edges} edges",
)
tut.check(
    "509 free parameters, (K - 1) per table row",
    net.n_parameters == 509 == free_entries,
    f"n_parameters {net.n_parameters}, free table entries {free_entries}",
)
joint_size = math.prod(net.cardinality(v) for v in net.variables) - 1
tut.check(
    "the full joint table would need over 1e16 parameters",
    net.n_parameters_joint == joint_size and joint_size > 1e16,
    f"n_parameters_joint {net.n_parameters_joint:.4g}, Π K_n - 1 = {joint_size:.4g}",
)

# %% [markdown]
# ## The DAG
# Root causes (hypovolemia, left-ventricular failure, anaphylaxis, a kinked tube, ...)
# at the top, the monitors' readings (heart rate from three sensors, blood pressure,
# CO2, oxygen saturation) at the bottom.

# %%
fig, ax = plt.subplots(figsize=(16, 9))
net.plot(ax=ax)
ax.set_title("ALARM (37 nodes, 46 edges)")
tut.save(fig, "dag")

# %% [markdown]
# ## Diagnosis
# A patient with low blood pressure, low central venous pressure and a high heart rate
# (as the monitor reads it): the posterior of each cause. One junction-tree calibration
# gives every posterior at once; each one equals its own exact query. (On networks with
# big cliques `marginals` calibrates a tree triangulated again without the observed
# variables, built once per set of them and shown by `net.junction_tree(observed)`, in
# which a subtree holding no evidence sends no message, since its tables, a conditional
# distribution, sum to 1; or it answers one pruned query per variable, all compiled into
# one plan in which a step two queries share is made once, whichever its cost model says
# is cheaper.)

# %%
causes = ["HYPOVOLEMIA", "LVFAILURE", "ANAPHYLAXIS", "INSUFFANESTH", "PULMEMBOLUS", "KINKEDTUBE"]
picture = {"BP": "LOW", "CVP": "LOW", "HRBP": "HIGH"}
posteriors = net.marginals(picture)
prior = net.marginals({})
singles = torch.stack([net.query(c, picture) for c in causes])
tut.check_close(
    "one calibration gives each cause's exact posterior",
    torch.stack([posteriors[c] for c in causes]),
    singles,
    atol=1e-12,
)
for c in causes:
    print(f"p({c}=TRUE): prior {prior[c][0]:.4f} -> given the picture {posteriors[c][0]:.4f}")
tut.record("p(LVFAILURE=TRUE | picture)", posteriors["LVFAILURE"][0], fmt=".4f")
# the picture points to a failing left ventricle (prior 5%), away from hypovolemia
lv, lv_prior = float(posteriors["LVFAILURE"][0]), float(prior["LVFAILURE"][0])
hypo, hypo_prior = float(posteriors["HYPOVOLEMIA"][0]), float(prior["HYPOVOLEMIA"][0])
tut.check(
    "the picture points to left-ventricular failure",
    lv > 10 * lv_prior and lv > 0.4,
    f"p(LVFAILURE=TRUE): prior {lv_prior:.4f} -> {lv:.4f}",
)
tut.check(
    "the picture points away from hypovolemia",
    hypo < hypo_prior,
    f"p(HYPOVOLEMIA=TRUE): prior {hypo_prior:.4f} -> {hypo:.4f}",
)

fig, ax = plt.subplots(figsize=(9, 3.6))
x = np.arange(len(causes))
ax.bar(x - 0.2, [prior[c][0] for c in causes], 0.4, color=PALETTE[0], label="prior")
given = [posteriors[c][0] for c in causes]
ax.bar(x + 0.2, given, 0.4, color=PALETTE[2], label="given BP, CVP low, HR high")
ax.set_xticks(x, [c.lower() for c in causes], rotation=20)
ax.set_ylabel("p(cause = TRUE)")
ax.legend()
tut.save(fig, "diagnosis")

# %% [markdown]
# ## Scenarios in one call
# Every combination of three readings (3 x 3 x 3 = 27 rows of evidence) is one batched
# query: a row of the result per scenario, equal to asking them one at a time.

# %%
states = range(3)
grid = [(bp, cvp, hr) for bp in states for cvp in states for hr in states]
batch = {name: torch.tensor([g[i] for g in grid]) for i, name in enumerate(["BP", "CVP", "HRBP"])}
start = time.perf_counter()
table = net.query("HYPOVOLEMIA", batch)
batched_ms = (time.perf_counter() - start) * 1e3
one_at_a_time = torch.stack(
    [net.query("HYPOVOLEMIA", {k: int(v[row]) for k, v in batch.items()}) for row in range(27)]
)
tut.check_close(
    "27 scenarios in one call equal 27 single queries", table, one_at_a_time, atol=1e-14
)
print(f"27 scenarios in {batched_ms:.2f} ms")
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for hr in states:
    img = table[[i for i, g in enumerate(grid) if g[2] == hr], 0].reshape(3, 3)
    axes[hr].imshow(img.numpy(), vmin=0, vmax=1, cmap="viridis")
    axes[hr].set_title(f"HRBP = {net.state_names('HRBP')[hr]}")
    axes[hr].set_xticks(states, net.state_names("CVP"))
    axes[hr].set_yticks(states, net.state_names("BP"))
    axes[hr].set_xlabel("CVP")
axes[0].set_ylabel("BP")
fig.suptitle("p(HYPOVOLEMIA = TRUE | BP, CVP, HRBP)")
tut.save(fig, "scenarios")

# %% [markdown]
# ## The most probable explanation
# `mpe` maximises the joint p(x | e) over all 34 unobserved variables at once (max-product
# with back-pointers). Taking each variable's most probable state separately is a
# different, and less probable, assignment in general.

# %%
mpe, log_p = net.mpe(picture, return_log_prob=True)
separate = {v: int(p.argmax()) for v, p in posteriors.items()}


def log_joint(assignment):
    full = {**{k: net.state_names(k).index(s) for k, s in picture.items()}, **assignment}
    return sum(
        float(net.table(v)[(*(full[p] for p in net.parents(v)), full[v])].log())
        for v in net.variables
    )


differ = sorted(v for v in mpe if mpe[v] != separate[v])
print(f"log p(MPE, e) = {log_p:.4f}; per-variable maxima: {log_joint(separate):.4f}")
print(f"they differ on {differ}")
tut.check_close(
    "log p(MPE, e) is the joint at the MPE", log_joint(mpe), log_p, atol=1e-9, rtol=1e-12
)
tut.check(
    "the per-variable maxima are another, less probable assignment",
    bool(differ) and log_p > log_joint(separate),
    f"they differ on {differ}; log p {log_p:.4f} vs {log_joint(separate):.4f}",
)
tut.record("log p(MPE, e)", log_p, fmt=".4f")

# %% [markdown]
# ## Observing is not intervening
# Total peripheral resistance (TPR) drives both the cardiac output's causes (through
# catecholamines and the heart rate) and the blood pressure, so observing a low cardiac
# output says something about TPR, and through it about BP; setting CO by intervention,
# `net.do({"CO": "LOW"})`, cuts CO's incoming edges and leaves TPR alone:
# p(BP | do(CO)) = Σ_tpr p(tpr) p(BP | CO, tpr).

# %%
seen = net.query("BP", {"CO": "LOW"})
done = net.do({"CO": "LOW"})
forced = done.query("BP")
low = net.state_names("CO").index("LOW")
p_tpr, bp_table = net.query("TPR"), net.table("BP")  # BP's parents: CO and TPR
by_hand = sum(
    p_tpr[t] * bp_table[tuple({"CO": low, "TPR": t}[p] for p in net.parents("BP"))]
    for t in range(3)
)
tut.check(
    "do() cuts CO's incoming edges and fixes it",
    done.parents("CO") == () and float(done.query("CO")[low]) == 1.0,
    f"parents of CO after do(): {done.parents('CO')}; before: {net.parents('CO')}",
)
tut.check_close("p(BP | do(CO)) = Σ_tpr p(tpr) p(BP | CO, tpr)", forced, by_hand, atol=1e-14)
tut.check_close(
    "intervening on CO leaves TPR alone", done.query("TPR"), net.query("TPR"), atol=1e-15
)
print(f"p(BP | CO=LOW)     = {seen.numpy().round(4)}")
print(f"p(BP | do(CO=LOW)) = {forced.numpy().round(4)}")
gap = float((seen - forced).abs().max())
tut.record("max |p(BP | CO) - p(BP | do(CO))|", gap, fmt=".4f")
tut.check("observing CO is not intervening on it", gap > 1e-3, f"max difference {gap:.4f}")

# %% [markdown]
# ## Learning with missing values
# Forward samples of ALARM with each entry missing completely at random with probability
# 0.2: almost no row is complete (0.8^37), so dropping incomplete rows (what pgmpy's
# estimators do) leaves nearly nothing. EM uses every row, summing the missing entries
# out exactly; its objective never decreases. A Dirichlet prior of one pseudo-count per
# cell (`concentration=2`) keeps unseen cells away from zero.

# %%
N = tut.steps(full=20_000, smoke=1_000)
train = net.sample(N, seed=0)
test = net.sample(tut.steps(full=5_000, smoke=1_000), seed=1)
gen = torch.Generator().manual_seed(2)
incomplete = {v: torch.where(torch.rand(N, generator=gen) < 0.2, -1, c) for v, c in train.items()}
complete = int((torch.stack(list(incomplete.values())) >= 0).all(0).sum())
learner = pyrobn.read_network(bnlearn_path("alarm"), device="cpu")
learner.fit(
    incomplete, concentration=2.0, restarts=1, max_iter=tut.steps(full=200, smoke=6), seed=0
)
result = learner.fit_result_
true_ll = float(net.log_prob(test).mean())
learned_ll = float(learner.log_prob(test).mean())
print(f"{N} rows, {complete} complete; EM: {result.n_iter} iterations")
print(f"held-out log-likelihood per row: true {true_ll:.4f}, learned {learned_ll:.4f}")
trace = np.array(result.objective)
tut.check(
    "almost no row is complete",
    complete <= 0.01 * N,
    f"{complete} of {N} rows complete (expected {N * 0.8**37:.2f})",
)
steps = np.diff(trace)
tut.check(
    "EM's objective never goes down",
    bool(np.all(steps >= -1e-9 * abs(trace[-1]))),
    f"{len(trace)} values, smallest step {steps.min():.3g}",
)
tut.record("held-out log-lik per row, true tables", true_ll, fmt=".4f")
tut.record("held-out log-lik per row, EM", learned_ll, fmt=".4f")
tut.check(
    "EM's tables are within 0.6 nats per row of the truth",
    true_ll - learned_ll < 0.6,
    f"held-out log-lik per row: true {true_ll:.4f}, EM {learned_ll:.4f}",
)
if not tut.smoke:
    tut.check(
        "after the full run, within 0.1 nats per row",
        true_ll - learned_ll < 0.1,
        f"held-out log-lik per row: true {true_ll:.4f}, EM {learned_ll:.4f}",
    )

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
axes[0].plot(trace / N, color=PALETTE[0])
axes[0].set_xlabel("EM iteration")
axes[0].set_ylabel("log posterior per row")
true_entries = torch.cat([net.table(v).flatten() for v in net.variables])
learned_entries = torch.cat([learner.table(v).flatten() for v in net.variables])
axes[1].scatter(true_entries, learned_entries, s=4, color=PALETTE[2])
axes[1].plot([0, 1], [0, 1], color="black", lw=1, ls="--")
axes[1].set_xlabel("true table entry")
axes[1].set_ylabel("learned by EM")
tut.save(fig, "learning")
