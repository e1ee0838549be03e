"""Exceptions that report a user's mistake rather than a bug.

The command-line interface prints the message of a :class:`DejavuError` without a
traceback and exits with status 1, so each message names the file, row, id or value
that is wrong and what to do about it.
"""


class DejavuError(Exception):
    """Base class for errors caused by the user's input or settings."""


class InputError(DejavuError):
    """A manifest, image, labels file or option value is invalid."""


class ModelLoadError(DejavuError):
    """A checkpoint or model name cannot be loaded."""


class OutputDirError(DejavuError):
    """An output folder cannot be used as requested."""
