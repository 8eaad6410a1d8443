"""Diffusion models (notes 2.2.2.4, eq. 16-17): the forward chain as a Pyro guide, the
reverse chain as the model; the variance schedules; the plain-PyTorch reference."""

from pyrobn.models.diffusion.model import PREDICTIONS, BoundTerms, DiffusionModel
from pyrobn.models.diffusion.schedule import SCHEDULES, Schedule, betas_for

__all__ = ["PREDICTIONS", "SCHEDULES", "BoundTerms", "DiffusionModel", "Schedule", "betas_for"]
