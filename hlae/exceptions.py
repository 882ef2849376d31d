"""Errors and warnings raised by hlae.

Every error about the user's data or parameters is a subclass of :class:`ValueError`, so
that callers can catch the whole family with one ``except ValueError``.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError

__all__ = [
    "InputError",
    "ParameterError",
    "DataFileError",
    "ModelFileError",
    "DivergenceError",
    "NotFittedError",
    "HlaeWarning",
    "TrainingWarning",
]


class InputError(ValueError):
    """The data given to hlae cannot be used as it is; the message says why and how to fix it."""


class ParameterError(ValueError):
    """A parameter is out of range or of the wrong kind."""


class DataFileError(InputError):
    """A data file could not be read as a table of sequences."""


class ModelFileError(ValueError):
    """A saved model directory is missing a file or holds a damaged one."""


class DivergenceError(RuntimeError):
    """Training diverged repeatedly; the best model found so far was kept."""


class HlaeWarning(UserWarning):
    """Base class of the warnings hlae issues."""


class TrainingWarning(HlaeWarning):
    """Something in training deserves a look (slow progress, a recovered divergence, ...)."""
