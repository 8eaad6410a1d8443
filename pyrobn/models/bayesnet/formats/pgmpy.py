"""Conversion to and from pgmpy's ``DiscreteBayesianNetwork`` (for its structure learning).

pgmpy keeps a CPD as a (node states, parent assignments) array whose columns run over
the parents with the last varying fastest; pyrobn's table is its transpose reshaped:
one axis per parent, then the node's states. Floats are copied, not recomputed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pyrobn.errors import ConfigurationError
from pyrobn.models.bayesnet.formats._spec import NetworkSpec, NodeSpec, build

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = ["from_pgmpy", "to_pgmpy"]


def _pgmpy_class() -> Any:
    try:
        from pgmpy.models import DiscreteBayesianNetwork as PgmpyNetwork
    except ImportError:  # pgmpy < 1.0, or no pgmpy
        try:
            from pgmpy.models import BayesianNetwork as PgmpyNetwork
        except ImportError as exc:
            raise ConfigurationError(
                "pgmpy is not installed (pip install pgmpy, or pyrobn[bench])"
            ) from exc
    return PgmpyNetwork


def from_pgmpy(
    cls: type[DiscreteBayesianNetwork], model: Any, *, device: Any = None
) -> DiscreteBayesianNetwork:
    """The network of a pgmpy model with its CPDs (state names kept, as strings)."""
    if not hasattr(model, "get_cpds") or not hasattr(model, "nodes"):
        raise ConfigurationError(
            f"expected a pgmpy DiscreteBayesianNetwork, got {type(model).__name__}"
        )
    spec = NetworkSpec(f"<pgmpy {type(model).__name__}>")
    cpds = {cpd.variable: cpd for cpd in model.get_cpds()}
    for name in model.nodes():
        cpd = cpds.get(name)
        if cpd is None:
            raise ConfigurationError(f"pgmpy model: node {name!r} has no CPD")
        names = cpd.state_names.get(name) if cpd.state_names else None
        card = int(cpd.cardinality[0])
        states = [str(s) for s in names] if names else [str(k) for k in range(card)]
        spec.add(NodeSpec(str(name), states))
    for name, cpd in cpds.items():
        node = spec.node(str(name), 0)
        values = np.asarray(cpd.values, dtype=np.float64)  # (card, *parent cards)
        node.parents = [str(p) for p in cpd.variables[1:]]
        node.table = np.ascontiguousarray(np.moveaxis(values, 0, -1))
    return build(spec, cls, device=device)


def to_pgmpy(net: DiscreteBayesianNetwork) -> Any:
    """The same network as a pgmpy ``DiscreteBayesianNetwork`` (checked by pgmpy)."""
    from pgmpy.factors.discrete import TabularCPD

    model = _pgmpy_class()()
    model.add_nodes_from(net.variables)
    model.add_edges_from([(p, n) for n in net.variables for p in net.parents(n)])
    names = {n: list(net.state_names(n)) for n in net.variables}
    for n in net.variables:
        table = net.table(n).detach().cpu().numpy()
        parents = list(net.parents(n))
        card = table.shape[-1]
        model.add_cpds(
            TabularCPD(
                n,
                card,
                table.reshape(-1, card).T,
                evidence=parents or None,
                evidence_card=[net.cardinality(p) for p in parents] or None,
                state_names={v: names[v] for v in (n, *parents)},
            )
        )
    return model
