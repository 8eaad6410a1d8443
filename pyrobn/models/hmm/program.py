"""Eq. 12 as a Pyro program: the model/guide pair of
:class:`~pyrobn.models.hmm.HiddenMarkovModel`.

The model samples the tables from their priors (Dirichlet rows; Normal means and
inverse-gamma variances for Gaussian emissions) and each z_t, enumerated under
``pyro.markov``, inside the data plate ``"data"``; the guide is a point mass
(``AutoDelta``) on the tables, so that ``TraceEnum_ELBO`` sums the states out exactly and
SVI finds the MAP tables. ``infer_states`` decodes through Pyro's ``infer_discrete``.
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import infer_discrete
from pyro.infer.autoguide import AutoDelta, init_to_value

from pyrobn.errors import ConfigurationError
from pyrobn.infer.params import release_with, unique_name
from pyrobn.models.base import PyrobnModule
from pyrobn.models.hmm.data import Batch

__all__ = ["PyroProgram"]

_GLOBALS = ("init_probs", "trans_probs", "emission_probs", "means", "variances")


class PyroProgram(PyrobnModule):
    """The :class:`~pyrobn.models.hmm.HiddenMarkovModel` methods that make it a Pyro
    model/guide pair. A :class:`~pyrobn.models.base.PyrobnModule` itself, so that the base
    wraps ``model`` and ``guide`` with ``pyro_method`` where they are defined (here)."""

    # ------------------------------------------------------------------ Pyro model / guide
    def _priors(self) -> dict[str, dist.Distribution]:
        k, alpha = self.n_states, self.concentration
        ones = self.init_probs.new_ones
        priors: dict[str, dist.Distribution] = {
            "init_probs": dist.Dirichlet(alpha * ones(k)),
            "trans_probs": dist.Dirichlet(alpha * ones(k, k)).to_event(1),
        }
        if self.emission == "categorical":
            priors["emission_probs"] = dist.Dirichlet(alpha * ones(k, self.n_symbols)).to_event(1)
        else:
            d = self.n_features
            priors["means"] = dist.Normal(ones(k, d) * 0.0, 10.0 * ones(k, d)).to_event(2)
            priors["variances"] = dist.InverseGamma(ones(k, d), ones(k, d)).to_event(2)
        return priors

    def model(
        self, observations: Any = None, lengths: Any = None, states: Any = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """Eq. 12 as a Pyro program: Dirichlet priors, z_t enumerated under ``pyro.markov``
        inside the data plate ``"data"`` (one entry per sequence).

        Known states (``states`` >= 0) are clamped by a factor 1[z_t = state]; padded steps
        keep z (an identity transition) and emit nothing; NaN observations are masked out.
        """
        batch = self._as_batch(observations, lengths, kwargs.get("mask"), states)
        return self._model(batch)

    def _model(self, batch: Batch) -> dict[str, torch.Tensor]:
        params = {name: pyro.sample(name, prior) for name, prior in self._priors().items()}
        n, length = batch.shape
        init, trans = params["init_probs"], params["trans_probs"]
        eye = torch.eye(self.n_states, dtype=trans.dtype, device=trans.device)
        observed = batch.observed_mask()
        z = None
        with pyro.plate("data", n, dim=-1):
            for t in pyro.markov(range(length)):
                if z is None:
                    probs = init
                else:
                    probs = trans[z]
                    if batch.mask is not None:
                        probs = torch.where(batch.mask[:, t, None], probs, eye[z])
                z = pyro.sample(f"z_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"})
                if batch.labels is not None:
                    label = batch.labels[:, t]
                    allowed = (z == label) | (label < 0)
                    pyro.factor(
                        f"label_{t}",
                        torch.where(allowed, 0.0, -math.inf).to(trans.dtype),
                    )
                if self.emission == "categorical":
                    emit = dist.Categorical(params["emission_probs"][z])
                    pyro.sample(f"x_{t}", emit.mask(observed[:, t]), obs=batch.values[:, t])
                else:
                    loc, var = params["means"][z], params["variances"][z]
                    emit = dist.Normal(loc, var.sqrt()).mask(observed[:, t])
                    pyro.sample(f"x_{t}", emit.to_event(1), obs=batch.values[:, t])
        return params

    def guide(
        self, observations: Any = None, lengths: Any = None, states: Any = None, **kwargs: Any
    ) -> dict[str, torch.Tensor]:
        """MAP guide: a point mass (``AutoDelta``) on the probability tables, started at
        the current parameters; the states are summed out exactly by ``TraceEnum_ELBO``.
        Its parameters live in Pyro's param store under the model's own name
        (``self._guide_prefix("map")``)."""
        batch = self._as_batch(observations, lengths, kwargs.get("mask"), states)
        return self._get_autoguide()(batch)

    def _get_autoguide(self) -> AutoDelta:
        if self.__dict__.get("_autoguide") is None:
            guide = AutoDelta(
                poutine.block(self._model, expose=list(_GLOBALS)),
                init_loc_fn=init_to_value(values=self.params),
            )
            prefix = unique_name(self._guide_prefix("map"))
            guide._pyro_name = prefix
            release_with(guide, prefix)
            self.__dict__["_autoguide"] = guide
        return self.__dict__["_autoguide"]

    def infer_states(self, observations: Any, lengths: Any = None, temperature: int = 0):
        """Pyro's ``infer_discrete`` on :meth:`model` with the current parameters.

        temperature 0 gives the MAP states (the Viterbi path), 1 a posterior sample. Slow
        (a Python loop over time through Pyro): for checks and small data; use
        :meth:`viterbi` otherwise. Returns (N, T) (or (T,)) states.
        """
        if temperature not in (0, 1) or isinstance(temperature, bool):
            raise ConfigurationError(f"temperature must be 0 or 1, got {temperature!r}")
        batch = self._as_batch(observations, lengths)
        conditioned = poutine.condition(self._model, data=self.params)
        decoder = infer_discrete(conditioned, first_available_dim=-2, temperature=temperature)
        trace = poutine.trace(decoder).get_trace(batch)
        n, length = batch.shape
        path = torch.stack([trace.nodes[f"z_{t}"]["value"].reshape(n) for t in range(length)], 1)
        if batch.mask is not None:
            path = torch.where(batch.mask, path, torch.full_like(path, -1))
        return self._unbatch(path, batch)
