"""The variational autoencoder of the lecture: p(z) = N(0, I), pθ(x | z), qφ(z | x).

Lecture ("Autoencoder Variacional"); chapter 2.2.2.2 (Figura 9: generation z -> x,
inference x -> z). Trained by SVI on the ELBO with reparametrised draws z = μ + σ ε,
ε ~ N(0, I) (lecture, "Reparametrización").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pyro.infer import ELBO
from pyro.optim import PyroOptim

from pyrobn.errors import ConfigurationError
from pyrobn.graph import ModelGraph
from pyrobn.models.vae.latent import ChartStart, LatentTools
from pyrobn.validation import check_int

__all__ = ["VAE"]


class VAE(ChartStart, LatentTools):
    """Variational autoencoder: p(z) = N(0, I), pθ(x | z), qφ(z | x) = N(μφ(x), diag σφ²(x)).

    Lecture ("Autoencoder Variacional"); chapter 2.2.2.2 (Figura 9). The encoder hφ is
    an MLP ``data_dim -> hidden... -> 2 latent_dim`` giving μ and log σ²; the decoder fθ
    mirrors it and gives the parameters of pθ(x | z) (:mod:`pyrobn.models.vae.likelihoods`):

    - ``"bernoulli"``: logits; log p is minus the binary cross-entropy (BCE). For data
      strictly in {0, 1} it is a normalised log-likelihood; for grey values in [0, 1]
      it is the usual BCE objective but not a normalised density.
    - ``"continuous_bernoulli"``: logits of the continuous Bernoulli, a normalised density
      on [0, 1] (Loaiza-Ganem & Cunningham 2019).
    - ``"normal"``: the mean, with a per-feature scale σ: learned, or fixed by
      ``obs_scale`` (then -log p is the lecture's squared error / 2σ² + const). A learned
      σ can explain low-dimensional data as noise and leave z unused (posterior
      collapse); fixing σ near the data's noise level keeps the latent code informative.
    - ``"categorical"`` with ``levels=L``: L logits per feature, x in {0, ..., L - 1}
      (the lecture's cross-entropy); on the digits' 17 grey levels the ELBO and
      :meth:`log_likelihood` are in nats per image, the book's benchmark (notes 2.2.2).

    ``model(x)`` / ``guide(x)`` subsample the data plate with ``batch_size``.

    >>> vae = pyrobn.VAE(64, latent_dim=2, hidden=(32,), likelihood="categorical", levels=17)
    >>> x = torch.randint(0, 17, (20, 64))
    >>> vae.fit(x, steps=3, seed=0, progress=False).fit_result_.n_iter
    3
    >>> vae.elbo(x, seed=0).shape, vae.sample(2, seed=0).dtype
    (torch.Size([20]), torch.int64)
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        activation: str = "relu",
        obs_scale: float | None = None,
        levels: int | None = None,
    ) -> None:
        super().__init__(
            data_dim=data_dim,
            latent_dim=latent_dim,
            hidden=list(hidden) if isinstance(hidden, Sequence) else hidden,
            likelihood=likelihood,
            activation=activation,
            obs_scale=obs_scale,
            levels=levels,
        )
        self._init_vae(data_dim, latent_dim, hidden, likelihood, activation, 0, obs_scale, levels)

    def graph(self, inference: bool = False) -> ModelGraph:
        """Figura 9: the generative network z -> x (θ: the decoder) in a plate over the N
        data rows, or with ``inference=True`` the encoder's x -> z (φ). Drawn with
        matplotlib (``plot_graph``); ``pyro.render_model(vae.model, (x,))`` draws the same
        sites but needs the graphviz binary and shows no parameters or inference arrow.

        >>> g = pyrobn.VAE(4, hidden=(8,)).graph()
        >>> g.parents("x"), g.node("z").role
        (('z', 'theta'), 'latent')
        """
        if inference:
            return self._graph(True, "VAE inference q_φ(z | x)")
        return self._graph(False, "VAE p(z) p_θ(x | z)")

    def model(self, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """z_i ~ N(0, I), x_i ~ pθ(x | z_i) for a subsample of ``batch_size`` rows of x."""
        return self._model(x, None, batch_size)

    def guide(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """z_i ~ qφ(z | x_i) = N(μφ(x_i), diag σφ²(x_i)) (reparametrised)."""
        self._guide(x, None, batch_size)

    def fit(
        self,
        x: Any,
        *,
        steps: int = 2000,
        batch_size: int | None = 128,
        lr: float = 1e-3,
        loss: str | ELBO = "trace",
        jit: bool | None = None,
        num_particles: int = 1,
        optim: PyroOptim | None = None,
        **kwargs: Any,
    ) -> VAE:
        """Maximise the ELBO over x with :func:`pyrobn.infer.fit_svi` (Adam, minibatches).

        Returns the model; ``fit_result_`` holds the ELBO estimate per step.
        ``loss="trace"`` (``Trace_ELBO``: Monte Carlo ELBO) or ``"meanfield"``
        (``TraceMeanField_ELBO``: the lecture's closed-form Gaussian KL term); or any Pyro
        ELBO instance. ``jit=None`` takes the fast path: for "trace" Pyro's
        ``JitTrace_ELBO`` (the same estimator compiled by ``torch.jit``, about 1.3x
        faster per step on CPU); for "meanfield" the eager ELBO, because Pyro's
        ``JitTraceMeanField_ELBO`` is about 10x slower here (``bench/vae.py``). The
        compiled path is safe for these models: their structure is static and every
        tensor reaches them through the arguments. Pass ``jit=False`` when: the run is
        short (compiling costs about a second, a few hundred eager steps of a small
        network); you debug (Pyro's site validation and readable tracebacks only run
        eagerly); or you change the model's code between calls of one loss object. Other
        keyword arguments (``seed``, ``progress``, ``callback``, ``checkpoint``, ...) go
        to :func:`fit_svi`; ``seed`` leaves the caller's random streams untouched. Raises
        ``TrainingDiverged`` (parameters rolled back) on NaN/inf.
        """
        x = self._check_x(x, matrix=True)
        return self._fit(
            self.model,
            self.guide,
            (x,),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            loss=loss,
            jit=jit,
            num_particles=num_particles,
            optim=optim,
            **kwargs,
        )

    def encode(
        self,
        x: Any,
        *,
        sample: bool = False,
        seed: int | None = None,
        return_scale: bool = False,
    ) -> Any:
        """encoder(x): the posterior mean μφ(x), or a draw z ~ qφ(z | x) with ``sample=True``
        (the notes' encoder, 2.2.4.2; :mod:`pyrobn.models.vae.latent` says why the mean is
        the default). x of shape (..., D). ``return_scale=True`` returns (μφ(x), σφ(x)).
        """
        x = self._check_x(x)
        if return_scale:
            with torch.no_grad():
                return self._posterior(x, None)
        return self._encode(x, None, bool(sample), seed)

    def decode(self, z: Any, *, sample: bool = False, seed: int | None = None) -> torch.Tensor:
        """decoder(z): E[x | z] under pθ(x | z) (probabilities for Bernoulli, the mean level
        for the categorical), or a draw x ~ pθ(x | z) with ``sample=True``; z of shape
        (..., L)."""
        return self._decode(self._check_z(z), None, bool(sample), seed)

    def reconstruct(self, x: Any) -> torch.Tensor:
        """decode(encode(x)): the mean of pθ(x | z = μφ(x))."""
        return self.decode(self.encode(x))

    def _no_label(self, y: Any, name: str = "y") -> None:
        if y is not None:
            raise ConfigurationError(
                f"{name} given, but the VAE is unconditional (n_classes=0): it cannot "
                "generate or score a chosen class (use pyrobn.ConditionalVAE)"
            )

    def sample(
        self, n: int, *, y: Any = None, seed: int | None = None, mean: bool = False
    ) -> torch.Tensor:
        """Ancestral samples (chapter 2.1): z ~ N(0, I), then x ~ pθ(x | z); shape (n, D).

        ``mean=True`` returns E[x | z] instead of a draw (the usual "generated image").
        Categorical draws are integer levels (dtype long). ``y`` exists for the harness
        protocol (:mod:`pyrobn.evaluation`) and must be None: the VAE has no label.
        """
        self._no_label(y)
        check_int(n, "n")
        return self._sample(None, n, seed, bool(mean))

    def elbo(self, x: Any, *, num_samples: int = 1, seed: int | None = None) -> torch.Tensor:
        """Per-row ELBO E_q[log pθ(x, z) - log qφ(z | x)], averaged over ``num_samples``
        reparametrised draws; shape (n,). ELBO <= log pθ(x) (Jensen, lecture), so
        -ELBO is an upper bound on the negative log-likelihood in nats."""
        x = self._check_x(x, matrix=True)
        return self._evaluate(x, None, num_samples, seed, "mean")

    def log_likelihood(
        self,
        x: Any,
        *,
        num_samples: int = 1000,
        seed: int | None = None,
        proposal: str = "posterior",
    ) -> torch.Tensor:
        """Estimate of log pθ(x) by importance sampling (eq. 20 with a proposal); shape (n,).

        log p̂(x) = logsumexp_k [log pθ(x, z_k) - log r(z_k)] - log K, z_k ~ r:

        - ``proposal="posterior"`` (default): r = qφ(z | x). Its expectation rises with K
          from the ELBO (K = 1) to log pθ(x) (Burda et al. 2016): the honest number to
          compare models by, still a lower bound in expectation.
        - ``proposal="prior"``: r = p(z), the plain Monte Carlo estimate of eq. 20,
          log (1/K) Σ_k pθ(x | z_k). Far below log pθ(x) at any affordable K in more
          than a few dimensions (:func:`pyrobn.models.vae.estimator_spread`, tutorial 09).
        """
        x = self._check_x(x, matrix=True)
        return self._evaluate(x, None, num_samples, seed, "logsumexp", proposal)

    def nll(
        self, x: Any, y: Any = None, *, seed: int | None = None, num_samples: int | None = None
    ) -> torch.Tensor:
        """-log p̂(x) per row in nats, shape (n,): minus :meth:`log_likelihood` with the
        posterior proposal (the harness protocol, ``nll_kind = "bound"``).

        -log p̂(x) = -logsumexp_k [log pθ(x, z_k) - log qφ(z_k | x)] + log K, z_k ~ qφ(z | x).
        E[log p̂(x)] <= log pθ(x) (Jensen), so the value is an **upper bound on -log pθ(x)
        in expectation** (one draw may fall below it), tightening as K grows (Burda et al.
        2016); with K = 1 it is -ELBO. K = ``num_samples``, by default ``self.nll_samples``
        (1000). ``y`` must be None (the VAE is unconditional). The same ``seed`` gives the
        same draws as ``log_likelihood(x, num_samples=K, seed=seed)``.

        >>> vae = pyrobn.VAE(4, hidden=(8,))
        >>> vae.nll(torch.ones(3, 4), seed=0, num_samples=10).shape
        torch.Size([3])
        """
        self._no_label(y)
        k = self._nll_num_samples(num_samples)
        return -self.log_likelihood(x, num_samples=k, seed=seed)
