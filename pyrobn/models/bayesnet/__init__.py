"""Discrete Bayesian networks (notes 2.1): p(x_1..x_N) = Π_n p(x_n | Pa(x_n)) (eq. 8).

:class:`DiscreteBayesianNetwork` holds one conditional probability table (:class:`CPT`)
per node and answers every exact query of the notes' section 2.1.1 (marginals,
posteriors, joint probabilities, eq. 3-7) by a compiled variable elimination
(:mod:`pyrobn.infer.enumeration`; log space, or linear space where nothing can
underflow), batched over evidence rows. It is also a Pyro
model/guide pair: every node is a sample site, observed where the data has it and
enumerated in parallel where it is missing, usable with ``TraceEnum_ELBO`` and
``infer_discrete``. :func:`student_network` is the notes' example (eq. 1, Figura 1).

The package is laid out by job:

* :mod:`.cpt` — tables and the DAG's order; :mod:`.network` — the class core
  (structure, tables, evidence, the Pyro model/guide pair);
* :mod:`.queries` — exact queries; :mod:`.learning` — fitting the tables;
* :mod:`.formats` — files (JSON, ...); :mod:`.text` — text queries;
  :mod:`.student` — the notes' network.

>>> net = pyrobn.student_network()
>>> net.query("x2")                                         # p(x2)      (eq. 3)
tensor([0.3050, 0.6950], dtype=torch.float64)
>>> round(net.probability({"x3": 1}, evidence={"x2": 1}), 4)  # 0.546 / 0.695 (eq. 7)
0.7856
"""

from __future__ import annotations

from pyrobn.models.bayesnet._types import MISSING
from pyrobn.models.bayesnet.cpt import CPT, ROW_TOLERANCE
from pyrobn.models.bayesnet.formats import read_network, write_network
from pyrobn.models.bayesnet.formats.json import JSON_FORMAT, JSON_VERSION
from pyrobn.models.bayesnet.learning import FitResult
from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork
from pyrobn.models.bayesnet.student import student_network
from pyrobn.models.bayesnet.text import Query, parse_query

# the public path of the classes (also the class name stored in saved model files)
CPT.__module__ = DiscreteBayesianNetwork.__module__ = __name__

__all__ = [
    "CPT",
    "JSON_FORMAT",
    "JSON_VERSION",
    "MISSING",
    "ROW_TOLERANCE",
    "DiscreteBayesianNetwork",
    "FitResult",
    "Query",
    "parse_query",
    "read_network",
    "student_network",
    "write_network",
]
