"""Errors that describe a problem with the user's input rather than a bug."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from the user: the message says what was wrong and what was expected.

    The CLI prints the message as one line and exits non-zero; the napari widgets show it as a
    notification. Anything else escaping the core is a bug.
    """


class ModelFileError(UserInputError):
    """A model file that cannot be read: missing, truncated, foreign, unsafe or too new."""


class TrainingDiverged(UserInputError):
    """Training produced a NaN or infinite loss or weights; the trainer is back on its best
    finite weights, so saving it now keeps them and resuming starts from them."""


class CodeNotTrusted(UserInputError):
    """A bioimage.io package that runs only by importing Python code that comes with it (or
    from elsewhere): refused unless the user says they trust it (``--trust-code``)."""
