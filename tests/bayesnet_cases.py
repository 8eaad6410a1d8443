"""Random discrete Bayesian networks and brute-force answers, shared by the network tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from pyrobn import CPT, DiscreteBayesianNetwork

__all__ = ["brute_joint", "networks_with_zeros", "random_networks", "restrict", "split"]


def brute_joint(net: DiscreteBayesianNetwork) -> np.ndarray:
    """The full joint table Π_n p(x_n | Pa(x_n)) (eq. 8), axes in ``net.variables`` order."""
    operands = []
    for name in net.variables:
        axes = [net.variables.index(p) for p in net.parents(name)] + [net.variables.index(name)]
        operands += [net.table(name).cpu().numpy(), axes]
    return np.einsum(*operands, list(range(len(net.variables))))


def restrict(joint: np.ndarray, net, evidence: dict[str, int]) -> np.ndarray:
    """The joint with evidence axes fixed by one-hot weights (axes kept, size unchanged)."""
    out = joint
    for name, state in evidence.items():
        axis = net.variables.index(name)
        shape = [1] * joint.ndim
        shape[axis] = joint.shape[axis]
        out = out * np.eye(joint.shape[axis])[state].reshape(shape)
    return out


@st.composite
def random_networks(draw, max_nodes: int = 8):
    """Random DAGs (up to 8 nodes, 2-4 states, <= 3 parents), declared in a shuffled order."""
    n = draw(st.integers(1, max_nodes))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    cards = [int(rng.integers(2, 5)) for _ in range(n)]
    names = [f"v{i}" for i in rng.permutation(n)]
    cpts = {}
    for i in range(n):
        k = int(rng.integers(0, min(3, i) + 1))
        parents = [int(p) for p in rng.permutation(i)[:k]]
        shape = [cards[p] for p in parents]
        table = rng.dirichlet(np.ones(cards[i]), size=shape or None)
        cpts[names[i]] = CPT(table, parents=[names[p] for p in parents])
    order = list(cpts)
    rng.shuffle(order)
    net = DiscreteBayesianNetwork({name: cpts[name] for name in order}, device="cpu")
    return net, rng


def split(net, rng, max_query: int = 2):
    """A random (query, evidence) pair over disjoint variables."""
    names = list(rng.permutation(net.variables))
    n_obs = int(rng.integers(0, len(names)))
    evidence = {str(v): int(rng.integers(net.cardinality(v))) for v in names[:n_obs]}
    rest = names[n_obs:]
    query = [str(v) for v in rest[: int(rng.integers(1, min(max_query, len(rest)) + 1))]]
    return query, evidence


@st.composite
def networks_with_zeros(draw, max_nodes: int = 7, zeros: float = 0.3):
    """Random networks whose tables hold exact zeros (each entry with probability
    ``zeros``; deterministic rows included), so evidence can be impossible anywhere,
    pruned parts included; ``zeros=0`` gives generic tables (Dirichlet draws)."""
    n = draw(st.integers(2, max_nodes))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    cards = [int(rng.integers(2, 4)) for _ in range(n)]
    cpts = {}
    for i in range(n):
        k = int(rng.integers(0, min(3, i) + 1))
        parents = [int(p) for p in rng.permutation(i)[:k]]
        table = rng.dirichlet(np.ones(cards[i]), size=[cards[p] for p in parents] or None)
        table[rng.random(table.shape) < zeros] = 0.0
        table[..., 0] += table.sum(-1) == 0
        cpts[f"v{i}"] = CPT(table / table.sum(-1, keepdims=True), [f"v{p}" for p in parents])
    return DiscreteBayesianNetwork(cpts, device="cpu"), rng
