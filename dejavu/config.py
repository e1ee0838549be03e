"""YAML configuration files for the commands.

A config file sets any option of a command, either in a section named after the
command (``audit:``) or at its top level. Option names use underscores or dashes.
Relative paths are resolved against the config file's folder, unless the file's top
level sets ``paths_relative_to: out``: then they are relative to the output folder
given on the command line, and the section's own ``out`` is a folder inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from dejavu.errors import InputError

# Options whose values are files or folders.
PATH_OPTIONS = frozenset(
    {
        "target",
        "reference",
        "target_set",
        "control_set",
        "public_set",
        "out",
        "target_labels",
        "control_labels",
        "public_labels",
        "cache_dir",
    }
)


def read_config_section(
    path: str | os.PathLike, section: str, out: str | os.PathLike | None = None
) -> tuple[dict, bool]:
    """Read the options of one command from a YAML config.

    Parameters
    ----------
    path : path-like
        The YAML file.
    section : str
        Command name; its section is used when present, else the whole file.
    out : path-like, optional
        The output folder given on the command line; the base of relative paths in
        a file that sets ``paths_relative_to: out``.

    Returns
    -------
    options : dict
        Option names (with underscores) and values, paths resolved.
    relative_to_out : bool
        Whether the file's paths are relative to ``out``.

    Raises
    ------
    InputError
        If the file cannot be read, is not a mapping, or needs ``out`` and has none.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"cannot read config {path}: {err}") from err
    if not isinstance(data, dict):
        raise InputError(f"config {path} must be a YAML mapping of option names")
    values = data.get(section, data)
    if not isinstance(values, dict):
        raise InputError(f"section {section!r} of config {path} must be a mapping")
    relative_to_out = data.get("paths_relative_to") == "out"
    if relative_to_out and not out:
        raise InputError(
            f"config {path} gives paths relative to the output folder; pass --out"
        )
    base = Path(out) if relative_to_out else Path(path).resolve().parent
    options = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name == "paths_relative_to":
            continue
        options[name] = resolve_path(value, base) if name in PATH_OPTIONS else value
    if relative_to_out:
        options.setdefault("out", str(base))
    return options, relative_to_out


def resolve_path(value, base: str | os.PathLike):
    """Return ``value`` joined to ``base`` when it is a relative path string."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else Path(base) / path)
