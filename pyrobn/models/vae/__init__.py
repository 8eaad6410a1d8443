"""Variational autoencoders as Pyro model/guide pairs, and the latent-space tools of the notes.

Lecture ("Autoencoder Variacional"): a latent-variable model p(x, z) = p(z) pθ(x | z)
with prior p(z) = N(0, I) and a decoder fθ giving the parameters of pθ(x | z); an
encoder hφ gives the approximate posterior qφ(z | x) = N(μφ(x), diag σφ²(x)). Jensen's
inequality gives the ELBO,

    log pθ(x) = ELBO(φ, θ; x) + KL(qφ(z | x) || pθ(z | x)) >= ELBO(φ, θ; x),
    ELBO = E_q[log pθ(x | z)] - KL(qφ(z | x) || p(z)),

maximised by SVI with reparametrised samples z = μ + σ ε, ε ~ N(0, I). The chapter
(2.2.2.2, Figura 9) draws the same model as a Bayesian network z -> x with the
inference arrow x -> z; 2.2.3 (eq. 19) conditions every factor on a label y; 2.2.4.2
interpolates in latent space and 2.2.4.3 (eq. 21) moves along attribute vectors.

One job per file:

=================  ==========================================================
``vae.py``         :class:`VAE`             p(z) pθ(x | z), qφ(z | x)
``conditional.py`` :class:`ConditionalVAE`  p(z) pθ(x | z, y), qφ(z | x, y)  (eq. 19)
``autoencoder.py`` :class:`Autoencoder`     the deterministic AE of the lecture, MSE
``likelihoods.py`` pθ(x | z): Bernoulli, continuous Bernoulli, Normal, categorical
``latent.py``      interpolation, attribute vectors, the chart start, and the
                   spread of the eq. 20 estimators (prior vs importance sampling)
``latent_model.py`` the Gaussian latent model both VAEs share (model, guide, estimates)
``base.py``        networks, boundary checks and the training wrapper (``make_elbo``)
=================  ==========================================================

Training goes through :func:`pyrobn.infer.fit_svi`, by default with Pyro's
``JitTrace_ELBO`` (the same estimator as ``Trace_ELBO``, compiled by ``torch.jit``); see
:meth:`VAE.fit` for when to turn the compilation off.
"""

from __future__ import annotations

from pyrobn.models.vae.autoencoder import Autoencoder
from pyrobn.models.vae.base import ELBOS, make_elbo
from pyrobn.models.vae.conditional import ConditionalVAE
from pyrobn.models.vae.latent import (
    INTERPOLATIONS,
    EstimatorSpread,
    estimator_spread,
    lerp,
    slerp,
)
from pyrobn.models.vae.latent_model import PROPOSALS
from pyrobn.models.vae.likelihoods import LIKELIHOODS
from pyrobn.models.vae.vae import VAE

__all__ = [
    "ELBOS",
    "INTERPOLATIONS",
    "LIKELIHOODS",
    "PROPOSALS",
    "VAE",
    "Autoencoder",
    "ConditionalVAE",
    "EstimatorSpread",
    "estimator_spread",
    "lerp",
    "make_elbo",
    "slerp",
]
