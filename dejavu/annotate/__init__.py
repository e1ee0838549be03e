"""Object labels for record sets: from a labels file, a detector or the manifest.

Every stage after annotation receives the same data: for each record id, the
sorted list of distinct object labels in its image. :func:`resolve_labels` picks the
source in a fixed order (a labels file written by ``dejavu annotate``, else a
detector, else the manifest's ``objects`` column) and returns a
:class:`pandas.Series` indexed by record id in manifest order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dejavu.annotate.labels_file import read_labels_file
from dejavu.annotate.pipeline import annotate, detect_manifest
from dejavu.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "annotate",
    "detect_manifest",
    "labels_from_objects",
    "read_labels_file",
    "resolve_labels",
]


def resolve_labels(
    manifest,
    *,
    labels_file: str | os.PathLike | None = None,
    detector: str | os.PathLike | None = None,
    detector_options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad_records: bool = False,
    progress: bool = True,
) -> pd.Series:
    """Return the object labels of every record of a manifest.

    Sources are tried in this order: ``labels_file`` when given, else ``detector``
    when given, else the manifest's ``objects`` column.

    Parameters
    ----------
    manifest : dejavu.data.manifest.Manifest
        The record set. Its ``name`` (such as ``"public set"``) appears in errors.
    labels_file : path-like, optional
        A Parquet labels file written by ``dejavu annotate``, or a COCO instances
        JSON file (``.json``). Every record id of the manifest must be in it, with
        the same image content hash when both the file and the manifest have one.
    detector : path-like or str, optional
        Detector weights (a local file, or a published name such as ``yolo11n.pt``
        that ultralytics downloads when online).
    detector_options : mapping, optional
        Detector settings: ``conf`` (float), ``imgsz`` (int, pixels), ``batch_size``
        (int, images), ``device`` (str), ``classes`` (list of class names) and
        ``label_map`` (path of a YAML label map, also applied to a COCO file).
    cache_dir : path-like, optional
        Folder of the detection cache. Without it detections are not cached.
    skip_bad_records : bool, default=False
        Skip images the detector cannot decode instead of raising. Skipped records
        are left out of the result and listed in ``result.attrs["skipped"]`` as
        dicts with keys ``set``, ``file``, ``row``, ``id`` and ``reason``.
    progress : bool, default=True
        Show a progress bar while detecting.

    Returns
    -------
    pandas.Series
        Index: record id (str), in manifest order. Values: sorted lists of
        distinct labels (list[str], possibly empty).

    Raises
    ------
    InputError
        If no source gives labels, a record id is missing from the labels file,
        its content hash differs, or an image cannot be decoded and
        ``skip_bad_records`` is false.
    ModelLoadError
        If the detector weights are missing or cannot be loaded.
    """
    if labels_file is not None:
        from dejavu.annotate.labels_file import labels_for_manifest

        label_map = (detector_options or {}).get("label_map")
        return labels_for_manifest(manifest, labels_file, label_map_path=label_map)
    if detector is not None:
        result = detect_manifest(
            manifest,
            detector,
            options=detector_options,
            cache_dir=cache_dir,
            skip_bad_records=skip_bad_records,
            progress=progress,
        )
        return result.labels_series()
    return labels_from_objects(manifest)


def labels_from_objects(manifest) -> pd.Series:
    """Return the manifest's ``objects`` column as sorted lists of distinct labels.

    Raises
    ------
    InputError
        If the manifest has no ``objects`` column.
    """
    frame = manifest.frame
    if "objects" not in frame.columns:
        raise InputError(
            f"the {manifest.name} ({manifest.path}) has no `objects` column; "
            f"pass a labels file (--{_option_stem(manifest.name)}-labels FILE) "
            "or --detector WEIGHTS"
        )
    labels = [_normalise_label_list(value) for value in frame["objects"]]
    series = pd.Series(labels, index=pd.Index(frame["id"].astype(str), name="id"))
    series.name = "labels"
    series.attrs["skipped"] = []
    return series


def _normalise_label_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, float) and value != value:  # NaN from a missing cell
        return []
    return sorted({str(label) for label in value})


def _option_stem(set_name: str) -> str:
    # "public set" -> "public", so the message names the option the CLI has.
    return str(set_name).removesuffix(" set").replace(" ", "-")
