"""The Gaussian latent-variable model both VAEs share: p(z) pθ(x | z[, y]), qφ(z | x[, y]).

Lecture ("Aproximación Variacional"): p(z) = N(0, I), the decoder fθ gives the parameters
of pθ(x | z) (:mod:`.likelihoods`), the encoder hφ gives qφ(z | x) = N(μφ(x), diag σφ²(x))
(it outputs μ and log σ²). Jensen's inequality gives the ELBO,

    log pθ(x) = ELBO(φ, θ; x) + KL(qφ(z | x) || pθ(z | x)) >= ELBO(φ, θ; x),
    ELBO = E_q[log pθ(x | z)] - KL(qφ(z | x) || p(z)).

The chapter (2.2.3, eq. 19) conditions every factor on a label y: the private methods here
take the condition as a one-hot tensor ``c`` (None for the plain VAE), and the public
classes (:class:`pyrobn.VAE`, :class:`pyrobn.ConditionalVAE`) wrap them.

Three estimates of log pθ(x) per row, all from :meth:`GaussianLatentModel._log_weights`:

- the ELBO, mean_k log w_k with w_k = pθ(x, z_k) / qφ(z_k | x), z_k ~ q;
- the importance-weighted estimate log (1/K) Σ_k w_k (Burda et al. 2016), which rises
  with K from the ELBO to log pθ(x);
- the plain Monte Carlo estimate of eq. 20, log (1/K) Σ_k pθ(x | z_k), z_k ~ p(z): the
  prior as proposal. Unbiased for pθ(x) but, in D dimensions, almost every prior draw
  explains x badly: its log is far below log pθ(x) until K is astronomically large.
  That is why the ELBO and importance sampling are needed (tutorial 09).

Each is a lower bound on log pθ(x) in expectation (Jensen), so minus each is an upper
bound on the negative log-likelihood in nats.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F

from pyrobn.errors import ConfigurationError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.models.vae.base import AutoencodingModel
from pyrobn.models.vae.likelihoods import Likelihood, check_likelihood
from pyrobn.nn import conditioned_mlp, encoder_decoder
from pyrobn.random import seeded
from pyrobn.validation import check_allocation, check_int

__all__ = ["PROPOSALS", "GaussianLatentModel"]

#: rows of data per chunk x samples x features kept under this many numbers in evaluation
_EVAL_BUDGET = 2**22
#: the proposals of the likelihood estimate: qφ(z | x) (importance sampling) or p(z) (eq. 20)
PROPOSALS = ("posterior", "prior")


def _chunks(n: int, per_row: int) -> Iterator[slice]:
    size = max(1, _EVAL_BUDGET // max(1, per_row))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class GaussianLatentModel(AutoencodingModel):
    """The VAE of the lecture with an optional one-hot condition c (eq. 19).

    Both VAEs implement the benchmark harness protocol (:mod:`pyrobn.evaluation`):
    ``nll_kind = "bound"``, ``nll`` (minus the importance-weighted estimate with
    ``nll_samples`` draws), ``sample(n, y=...)`` and ``n_classes`` (0 for the plain VAE).
    """

    n_classes: int
    likelihood: Likelihood
    #: what ``nll`` is (harness protocol): an upper bound on -log pθ(x) in expectation
    nll_kind = "bound"
    #: K, the importance samples of ``nll`` per row unless ``num_samples=`` is given
    #: (the default of ``log_likelihood``; set it on an instance to change the harness's)
    nll_samples: int = 1000

    def _init_vae(
        self,
        data_dim: int,
        latent_dim: int,
        hidden: Sequence[int],
        likelihood: str,
        activation: str,
        n_classes: int,
        obs_scale: float | None,
        levels: int | None = None,
        condition_every_layer: bool = False,
    ) -> None:
        hidden = self._init_common(data_dim, latent_dim, hidden, activation)
        likelihood, obs_scale, levels = check_likelihood(likelihood, obs_scale, levels)
        self.likelihood_name = likelihood
        self.n_classes = n_classes
        outputs = data_dim * (levels if levels is not None else 1)
        self._check_network_size(
            [data_dim + n_classes, *hidden, 2 * latent_dim],
            [latent_dim + n_classes, *reversed(hidden), outputs],
        )
        every = n_classes if condition_every_layer else 0
        if every:
            # the condition's projections V_k c of every later layer (ConditionedMLP)
            self._check_network_size(
                [n_classes, sum(hidden) + 2 * latent_dim],
                [n_classes, sum(hidden) + outputs],
            )
        if likelihood == "categorical":
            assert levels is not None
            # the same layer order as encoder_decoder, with L logits per decoded feature
            encoder = conditioned_mlp(
                [data_dim + n_classes, *hidden, 2 * latent_dim], activation, every
            )
            decoder = conditioned_mlp(
                [latent_dim + n_classes, *reversed(hidden), data_dim * levels], activation, every
            )
        else:
            encoder, decoder = encoder_decoder(
                data_dim,
                latent_dim,
                hidden,
                activation,
                condition_dim=n_classes,
                condition_every_layer=bool(every),
            )
        self._set_networks(encoder, decoder)
        self.likelihood = Likelihood(likelihood, data_dim, obs_scale, levels)

    def _check_support(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return self.likelihood.check(x, name)

    # -- structure -----------------------------------------------------------------------
    @property
    def n_parameters(self) -> int:
        """Free parameters of the generative model pθ(x, z) (its Bayesian network): the
        decoder fθ and a learned σ. The encoder's are :attr:`n_inference_parameters`."""
        return self._count(self.decoder) + self._count(self.likelihood)

    @property
    def n_inference_parameters(self) -> int:
        """Free parameters φ of the encoder qφ(z | x): trained with θ, not part of p."""
        return self._count(self.encoder)

    def _graph(self, inference: bool, title: str) -> ModelGraph:
        """Figura 9: generation z -> x (θ), or inference x -> z (φ); y -> both if conditional."""
        discrete_x = self.likelihood_name in ("bernoulli", "categorical")
        nodes = [
            GraphNode("z", "latent", label="$z$"),
            GraphNode("x", "observed", discrete=discrete_x, label="$x$"),
        ]
        members = ["z", "x"]
        if self.n_classes:
            nodes.append(GraphNode("y", "observed", discrete=True, label="$y$"))
            members.append("y")
        if inference:
            nodes.append(GraphNode("phi", "parameter", label=r"$\phi$"))
            edges = [("x", "z"), ("phi", "z")] + ([("y", "z")] if self.n_classes else [])
        else:
            nodes.append(GraphNode("theta", "parameter", label=r"$\theta$"))
            edges = [("z", "x"), ("theta", "x")] + ([("y", "x")] if self.n_classes else [])
        return ModelGraph(nodes, edges, plates={"data": (members, "N")}, title=title)

    # -- networks ----------------------------------------------------------------------
    @staticmethod
    def _join(a: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if c is None:
            return a
        return torch.cat([a, c.expand(*a.shape[:-1], c.shape[-1])], -1)

    def _posterior(
        self, x: torch.Tensor, c: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(μφ, σφ) of q(z | x[, y]): the encoder gives μ and log σ² (lecture)."""
        h = self.encoder(self._join(self.likelihood.encoder_input(x), c))
        loc, log_var = h.split(self.latent_dim, dim=-1)
        return loc, torch.exp(0.5 * log_var)

    def _decoder_out(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(self._join(z, c))

    def _one_hot(self, y: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        return None if y is None else F.one_hot(y, self.n_classes).to(dtype)

    # -- model / guide (eq. 19 with c = y; plain VAE with c = None) ---------------------
    def _model(
        self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int | None
    ) -> torch.Tensor:
        n = x.shape[0]
        with pyro.plate("data", n, subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            c = self._one_hot(None if y is None else (y if batch_size is None else y[idx]), x.dtype)
            zeros = xb.new_zeros(xb.shape[0], self.latent_dim)
            prior = dist.Independent(
                dist.Normal(zeros, torch.ones_like(zeros), validate_args=False),
                1,
                validate_args=False,
            )
            z = pyro.sample("z", prior)
            return pyro.sample("x", self.likelihood(self._decoder_out(z, c)), obs=xb)

    def _guide(self, x: torch.Tensor, y: torch.Tensor | None, batch_size: int | None) -> None:
        n = x.shape[0]
        with pyro.plate("data", n, subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            c = self._one_hot(None if y is None else (y if batch_size is None else y[idx]), x.dtype)
            loc, scale = self._posterior(xb, c)
            pyro.sample(
                "z",
                dist.Independent(
                    dist.Normal(loc, scale, validate_args=False), 1, validate_args=False
                ),
            )

    # -- the harness protocol (pyrobn.evaluation) -----------------------------------------
    def _nll_num_samples(self, num_samples: int | None) -> int:
        """``num_samples``, or the instance's ``nll_samples`` when None."""
        if num_samples is None:
            return check_int(self.nll_samples, "nll_samples")
        return check_int(num_samples, "num_samples")

    # -- evaluation -----------------------------------------------------------------------
    def _log_weights(
        self, x: torch.Tensor, c: torch.Tensor | None, num_samples: int, proposal: str
    ) -> torch.Tensor:
        """log w_k per row, shape (K, n).

        ``proposal="posterior"``: log w_k = log pθ(x | z_k) + log p(z_k) - log qφ(z_k | x),
        z_k ~ qφ(z | x) (reparametrised: the same draws as the guide's for K = 1).
        ``proposal="prior"``: log w_k = log pθ(x | z_k), z_k ~ p(z) (eq. 20).
        """
        prior = torch.distributions.Normal(
            torch.zeros((), dtype=x.dtype, device=x.device),
            torch.ones((), dtype=x.dtype, device=x.device),
            validate_args=False,
        )
        if proposal == "prior":
            z = prior.sample((num_samples, x.shape[0], self.latent_dim))
            return self.likelihood(self._decoder_out(z, c)).log_prob(x)
        loc, scale = self._posterior(x, c)
        q = torch.distributions.Normal(loc, scale, validate_args=False)
        z = q.rsample((num_samples,))
        log_q = q.log_prob(z).sum(-1)
        log_prior = prior.log_prob(z).sum(-1)
        log_lik = self.likelihood(self._decoder_out(z, c)).log_prob(x)
        return log_lik + log_prior - log_q

    @torch.no_grad()
    def _evaluate(
        self,
        x: torch.Tensor,
        c: torch.Tensor | None,
        num_samples: int,
        seed: int | None,
        reduce: str,
        proposal: str = "posterior",
    ) -> torch.Tensor:
        check_int(num_samples, "num_samples")
        if not isinstance(proposal, str) or proposal not in PROPOSALS:
            raise ConfigurationError(
                f"unknown proposal {proposal!r}; choose one of {list(PROPOSALS)}"
            )
        per_row = num_samples * (
            self.data_dim * self.likelihood.outputs_per_feature + self.latent_dim
        )
        check_allocation(min(x.shape[0], 1) * per_row, x.dtype, "one row's likelihood samples")
        out = []
        with seeded(seed):
            for rows in _chunks(x.shape[0], per_row):
                cb = None if c is None else c[rows]
                log_w = self._log_weights(x[rows], cb, num_samples, proposal)
                if reduce == "mean":
                    out.append(log_w.mean(0))
                else:
                    out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
        return torch.cat(out)

    @torch.no_grad()
    def _encode(
        self, x: torch.Tensor, c: torch.Tensor | None, sample: bool, seed: int | None
    ) -> torch.Tensor:
        """μφ(x), or a draw z ~ qφ(z | x) when ``sample``."""
        loc, scale = self._posterior(x, c)
        if not sample:
            return loc
        with seeded(seed):
            return loc + scale * torch.randn_like(loc)

    @torch.no_grad()
    def _decode(
        self, z: torch.Tensor, c: torch.Tensor | None, sample: bool, seed: int | None
    ) -> torch.Tensor:
        """E[x | z], or a draw x ~ pθ(x | z) when ``sample``."""
        out = self._decoder_out(z, c)
        if not sample:
            return self.likelihood.mean(out)
        with seeded(seed):
            return self.likelihood.sample(out)

    @torch.no_grad()
    def _sample(
        self,
        c: torch.Tensor | None,
        n: int,
        seed: int | None,
        mean: bool,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """z = τ ε, ε ~ N(0, I) (z ~ N(0, τ² I); τ = 1 is the prior), x ~ pθ(x | z[, y])
        or its mean; one draw ε per row whatever τ, so one seed gives the same ε."""
        check_allocation(
            n * (self.latent_dim + self.data_dim * self.likelihood.outputs_per_feature),
            self.dtype,
            f"sample({n})",
        )
        with seeded(seed):
            z = torch.randn(n, self.latent_dim, dtype=self.dtype, device=self.device)
            if temperature != 1.0:
                z = temperature * z
            out = self._decoder_out(z, c)
            if mean:
                return self.likelihood.mean(out)
            return self.likelihood.sample(out)
