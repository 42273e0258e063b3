"""Errors that describe a problem with the user's input rather than a bug."""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from the user: the message says what was wrong and what was expected.

    The CLI prints the message as one line and exits non-zero; the napari widgets show it as a
    notification. Anything else escaping the core is a bug.
    """


class ModelFileError(UserInputError):
    """A model file that cannot be read: missing, truncated, foreign, unsafe or too new."""
