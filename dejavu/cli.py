"""The ``dejavu`` command line: thin click commands over the library.

Each command parses and validates its options, calls one library function and prints
a short summary. Errors raised as :class:`dejavu.errors.DejavuError` become a one-line
message and exit status 1, with no traceback.
"""

from __future__ import annotations

import logging

import click

import dejavu
from dejavu.errors import DejavuError


class _Group(click.Group):
    """A click group that turns DejavuError into a clean message and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DejavuError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group)
@click.version_option(dejavu.__version__, prog_name="dejavu")
@click.option("-v", "--verbose", is_flag=True, help="Log debugging messages.")
def main(verbose: bool) -> None:
    """Audit CLIP-style models for deja vu memorization of their training data."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _parse_float_list(ctx, param, value):
    """Parse a comma-separated list of numbers, such as ``0.001,0.01,0.1``."""
    if value is None or isinstance(value, list | tuple):
        return value
    try:
        return [float(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of numbers, e.g. 0.01,0.1"
        ) from None


def _parse_int_list(ctx, param, value):
    """Parse a comma-separated list of positive integers, such as ``1,5,10``."""
    if value is None or isinstance(value, list | tuple):
        return value
    try:
        numbers = [int(part) for part in str(value).split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of integers, e.g. 1,5,10"
        ) from None
    if not numbers or any(n < 1 for n in numbers):
        raise click.BadParameter(f"{value!r} must list integers of at least 1")
    return numbers
