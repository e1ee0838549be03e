"""Label maps: rename a detector's or annotation set's classes to a data set's labels.

A label map is a YAML mapping from a source class name to a label of the data set's
vocabulary, or to ``null`` to drop the class::

    dining table: table
    cars: automobile
    person: null

Classes the map does not name keep their own name. Several classes may map to one
label (synonyms, plural forms), and the result keeps each label once per image.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from dejavu.errors import InputError

LabelMap = dict[str, str | None]


def load_label_map(path: str | os.PathLike) -> LabelMap:
    """Read a label map from a YAML file.

    Returns
    -------
    dict
        Source class name (str) to label (str), or to None for a dropped class.

    Raises
    ------
    InputError
        If the file is missing, is not valid YAML, or is not a mapping of names to
        names or null.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read label map {path}: {err.strerror}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"label map {path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InputError(
            f"label map {path} must be a mapping of class names to labels, "
            f"e.g. 'dining table: table'; got a {type(data).__name__}"
        )
    mapping: LabelMap = {}
    for key, value in data.items():
        if not isinstance(key, str | int) or not (
            value is None or isinstance(value, str | int)
        ):
            raise InputError(
                f"label map {path}: entry {key!r}: {value!r} must map a class name "
                "to a label or to null"
            )
        mapping[str(key)] = None if value is None else str(value)
    return mapping


def check_label_map(
    mapping: Mapping[str, str | None],
    classes: Iterable[str],
    *,
    source: str,
    path: str | os.PathLike | None = None,
) -> None:
    """Raise if the label map names classes that ``source`` does not have.

    Parameters
    ----------
    mapping : mapping
        The label map.
    classes : iterable of str
        Class names the detector or annotation file can produce.
    source : str
        What produces the classes, for the message (such as ``"detector
        yolo11n.pt"``).
    path : path-like, optional
        The label map file, for the message.

    Raises
    ------
    InputError
        If a key of ``mapping`` is not in ``classes``.
    """
    known = set(classes)
    unknown = sorted(key for key in mapping if key not in known)
    if unknown:
        where = f"label map {path}" if path is not None else "the label map"
        shown = ", ".join(map(repr, unknown[:10]))
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise InputError(
            f"{where} names classes that {source} does not have: {shown}{more}; "
            f"its classes are: {', '.join(sorted(known))}"
        )


def apply_label_map(names: Iterable[str], mapping: Mapping[str, str | None]) -> list:
    """Map each class name to its label; dropped classes become None.

    Returns a list aligned with ``names``.
    """
    return [mapping.get(name, name) for name in names]


def map_vocabulary(
    classes: Iterable[str], mapping: Mapping[str, str | None]
) -> list[str]:
    """Return the sorted labels that ``classes`` map to, without dropped ones."""
    return sorted({label for label in apply_label_map(classes, mapping) if label})
