"""Heavy queries as one tensor contraction in a pairwise order (opt_einsum's greedy path).

Variable elimination removes one variable at a time; on some pruned networks every
order the heuristics find forms a table far bigger than a pairwise contraction of the
same factors needs (munin1, the last node given three electromyography findings: 56
million entries in the best elimination order, 1.2 million on opt_einsum's greedy path,
13x faster). pgmpy's ``VariableElimination`` contracts on that path by default. Here it
is planned once per query shape and kept when its largest intermediate is at least 2x
smaller than the elimination's; its
pairwise contractions run as ``torch.einsum`` on the tables' device. Evidence slices the
tables (a batch of rows becomes one more index, kept in the output); the result is
p(x_Q, e) in linear space, or up to a positive factor per row with every intermediate
rescaled as it forms (where :func:`pyrobn.infer.enumeration.underflow_safe` fails).
"""

from __future__ import annotations

from collections.abc import Sequence

import opt_einsum
import torch

from pyrobn.errors import SizeLimitError
from pyrobn.infer.enumeration import _LETTERS, row_rescaled

__all__ = ["PATH_GAIN", "PathContraction"]

#: the path is used when its largest intermediate is this many times smaller
PATH_GAIN = 2


class PathContraction:
    """p(x_Q, e) of one query shape on opt_einsum's greedy pairwise path.

    Args:
        cards: cardinality of every variable.
        scopes: each table's variables in axis order.
        tables: the tables the query keeps (indices into ``scopes``).
        query: the queried variables (output axes after the batch axis).
        observed: the observed variables.

    Attributes: ``largest`` (entries of the path's largest intermediate), ``cost``
    (its flop count, opt_einsum's estimate), ``steps`` (each pairwise contraction:
    the operand positions taken and a ``torch.einsum`` equation).

    >>> pc = PathContraction([2, 2], [(0,), (0, 1)], (0, 1), (1,), ())
    >>> t = [torch.tensor([0.3, 0.7]), torch.tensor([[0.9, 0.1], [0.2, 0.8]])]
    >>> pc.joint(t, {}, None)
    tensor([[0.4100, 0.5900]])
    """

    def __init__(
        self,
        cards: Sequence[int],
        scopes: Sequence[Sequence[int]],
        tables: Sequence[int],
        query: Sequence[int],
        observed: Sequence[int],
    ) -> None:
        observed_set = set(observed)
        self.tables = tuple(tables)
        batch = len(cards)  # the batch axis is one more index, first wherever it is
        self._layout = []  # per table: (axes permutation, observed variables)
        terms: list[tuple[int, ...]] = []
        shapes = []
        size = {**dict(enumerate(cards)), batch: 1}
        for t in self.tables:
            scope = tuple(scopes[t])
            obs = [i for i, v in enumerate(scope) if v in observed_set]
            free = [i for i, v in enumerate(scope) if v not in observed_set]
            self._layout.append((tuple(obs + free), tuple(scope[i] for i in obs)))
            terms.append(((batch,) if obs else ()) + tuple(scope[i] for i in free))
            shapes.append(tuple(size[v] for v in terms[-1]))
        self.batched = any(batch in term for term in terms)  # some table holds evidence
        output = ((batch,) if self.batched else ()) + tuple(query)
        symbol = opt_einsum.get_symbol
        equation = ",".join("".join(map(symbol, t)) for t in terms)
        equation += "->" + "".join(map(symbol, output))
        path, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize="greedy")
        self.largest = int(info.largest_intermediate)
        self.cost = float(info.opt_cost)
        self.steps: list[tuple[tuple[int, ...], str, bool]] = []
        for taken in path:  # each step's equation, its indices renamed to letters
            taken = tuple(sorted(taken, reverse=True))
            inputs = [terms.pop(k) for k in taken]
            later = set(output).union(*map(set, terms))
            seen = dict.fromkeys(v for term in inputs for v in term)
            out = tuple(v for v in seen if v in later)
            if batch in out:
                out = (batch, *(v for v in out if v != batch))
            if not terms:  # the last step writes the output's axis order
                out = output
            if len(seen) > len(_LETTERS):  # never on a path worth taking: say so
                raise SizeLimitError(f"a pairwise step over {len(seen)} indices")
            letters = {v: _LETTERS[i] for i, v in enumerate(seen)}
            eq = ",".join("".join(letters[v] for v in term) for term in inputs)
            eq += "->" + "".join(letters[v] for v in out)
            self.steps.append((taken, eq, batch in out))
            terms.append(out)
        if terms[0] != output:  # no step at all: sum and arrange the lone table
            letters = {v: _LETTERS[i] for i, v in enumerate(terms[0])}
            to = "".join(letters[v] for v in terms[0]) + "->"
            self.steps.append(((0,), to + "".join(letters[v] for v in output), self.batched))

    def joint(
        self,
        tables: Sequence[torch.Tensor],
        evidence: dict[int, torch.Tensor],
        batch: int | None,
        rescale: bool = False,
    ) -> torch.Tensor:
        """p(x_Q, e) as (B, *cards of Q) (B = 1 for unbatched evidence); ``tables`` are
        all the network's tables, ``evidence`` {variable: (B,) or (1,) states}. With
        ``rescale`` every intermediate is divided by its largest entry (per row where
        it has the batch axis) as it forms: the result is then exact up to a positive
        factor per row, and cannot underflow as a whole."""
        rows = batch or 1
        operands = []
        for t, (perm, obs) in zip(self.tables, self._layout):
            table = tables[t]
            if obs:
                table = table.permute(perm)[tuple(evidence[v] for v in obs)]
                table = table.expand(rows, *table.shape[1:])
            operands.append(table)
        for taken, equation, has_batch in self.steps:
            inputs = [operands.pop(k) for k in taken]
            result = torch.einsum(equation, *inputs)
            if rescale and has_batch:
                result = row_rescaled(result)
            elif rescale:  # one factor common to every row
                top = result.max() if result.numel() else result.new_ones(())
                result = result / torch.where(top > 0, top, torch.ones_like(top))
            operands.append(result)
        result = operands[0]
        if self.batched:
            return result
        return result.unsqueeze(0).expand(rows, *result.shape)  # the same for every row
