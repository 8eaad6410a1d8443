"""The package's exception types.

Every error a user can trigger with bad input is a subclass of :class:`ValueError`
(through :class:`PyrobnValueError`); failures of a computation that was given valid
input are subclasses of :class:`RuntimeError`. Messages name the node, row, value or
shape at fault.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigurationError",
    "ConvergenceWarning",
    "CycleError",
    "DeviceUnavailable",
    "DistributedError",
    "InvalidDistributionError",
    "NonFiniteError",
    "OutOfSupportError",
    "PyrobnError",
    "PyrobnValueError",
    "ShapeError",
    "SizeLimitError",
    "TrainingDiverged",
    "UnknownVariableError",
    "ZeroProbabilityEvidence",
]


class PyrobnError(Exception):
    """Base class of every pyrobn error."""


class PyrobnValueError(PyrobnError, ValueError):
    """Bad input: the message names what is wrong and where."""


class ShapeError(PyrobnValueError):
    """A tensor of the wrong shape, dimension or length (expected vs given)."""


class NonFiniteError(PyrobnValueError):
    """NaN or infinite values where they are not allowed."""


class OutOfSupportError(PyrobnValueError):
    """A value outside the support: a state, label, symbol or probability out of range."""


class UnknownVariableError(PyrobnValueError, KeyError):
    """A variable, state, site or name that the model does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidDistributionError(PyrobnValueError):
    """Probabilities that are not a distribution: negative, or a row not summing to 1."""


class CycleError(PyrobnValueError):
    """A directed graph that should be acyclic has a cycle (the nodes on it are named)."""


class ZeroProbabilityEvidence(PyrobnValueError):
    """Conditioning on evidence whose probability is zero under the model."""


class ConfigurationError(PyrobnValueError):
    """An invalid option: a non-positive hyper-parameter, an unknown method or guide name."""


class SizeLimitError(PyrobnValueError):
    """A request whose allocation would pass the memory budget (the size needed is named).

    The budget is ``pyrobn.validation.MEMORY_BUDGET_BYTES`` (environment variable
    ``PYROBN_MEMORY_BUDGET``, in bytes, or with a K/M/G suffix).
    """


class ConvergenceWarning(UserWarning):
    """An optimisation stopped before its stated convergence criterion was met."""


class DeviceUnavailable(PyrobnError, RuntimeError):
    """The requested device (for example ``PYROBN_DEVICE=cuda``) is not available."""


class TrainingDiverged(PyrobnError, RuntimeError):
    """The loss became NaN or infinite; parameters were rolled back to the last finite step."""

    def __init__(self, step: int, loss: float, message: str | None = None) -> None:
        self.step = step
        self.loss = loss
        super().__init__(
            message
            or f"training diverged at step {step}: loss = {loss}; the parameters were "
            f"restored to their values at step {step - 1}, the last step with a finite loss "
            "and finite gradients (lower the learning rate or check the data)"
        )


class CheckpointError(PyrobnError, RuntimeError):
    """A checkpoint that cannot be read or does not match the run resuming from it."""


class DistributedError(PyrobnError, RuntimeError):
    """A distributed run that cannot start or continue (launch environment, dead peer)."""
