"""The labels file: per-image object labels, boxes and scores in Parquet.

Columns, one row per record:

- ``id`` (str): record id.
- ``sha256`` (str): SHA-256 of the image bytes, empty when unknown.
- ``labels`` (list of str): sorted distinct labels in the image.
- ``box_labels`` (list of str): the label of each box.
- ``boxes`` (list of [x1, y1, x2, y2] float): boxes in pixels of the image.
- ``scores`` (list of float): confidence of each box (1.0 for annotations).

The Parquet schema metadata key ``dejavu`` contains JSON with ``schema_version``,
``vocabulary`` (sorted labels the source can produce), ``source`` (``detector`` or
``coco``), ``settings`` (detector weights path and SHA-256, conf, imgsz, classes,
or the COCO file), ``label_map`` and ``versions``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dejavu._io import atomic_path
from dejavu.errors import InputError

SCHEMA_VERSION = 1
METADATA_KEY = b"dejavu"
COLUMNS = ("id", "sha256", "labels", "box_labels", "boxes", "scores")

_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("sha256", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("box_labels", pa.list_(pa.string())),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("scores", pa.list_(pa.float32())),
    ]
)


def write_labels_file(
    path: str | os.PathLike, frame: pd.DataFrame, metadata: dict[str, Any]
) -> Path:
    """Write a labels file atomically.

    Parameters
    ----------
    path : path-like
        The Parquet file to write.
    frame : pandas.DataFrame
        Columns as in :data:`COLUMNS`; ``boxes`` may hold arrays of shape
        (n_boxes, 4).
    metadata : dict
        ``vocabulary``, ``source``, ``settings``, ``label_map`` and ``versions``.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    columns = {
        "id": [str(v) for v in frame["id"]],
        "sha256": [str(v or "") for v in frame["sha256"]],
        "labels": [list(v) for v in frame["labels"]],
        "box_labels": [list(v) for v in frame["box_labels"]],
        "boxes": [[list(map(float, box)) for box in v] for v in frame["boxes"]],
        "scores": [list(map(float, v)) for v in frame["scores"]],
    }
    meta = {"schema_version": SCHEMA_VERSION, **metadata}
    schema = _SCHEMA.with_metadata({METADATA_KEY: json.dumps(meta).encode("utf-8")})
    table = pa.table(columns, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_labels_file(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a labels file written by :func:`write_labels_file`.

    Returns
    -------
    (pandas.DataFrame, dict)
        The rows (``labels``, ``box_labels`` and ``scores`` as lists, ``boxes`` as
        lists of 4-element lists) and the metadata.

    Raises
    ------
    InputError
        If the file is missing, not Parquet, or lacks a required column.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file {path} does not exist; check the path")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(
            f"labels file {path} is not a readable Parquet file: {err}"
        ) from err
    missing = [col for col in ("id", "labels") if col not in table.column_names]
    if missing:
        raise InputError(
            f"labels file {path} has no column {', '.join(map(repr, missing))}; "
            "write it with `dejavu annotate`"
        )
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    metadata = json.loads(raw) if raw else {}
    frame = pd.DataFrame(
        {name: table.column(name).to_pylist() for name in table.column_names}
    )
    frame["id"] = frame["id"].astype(str)
    return frame, metadata


def labels_for_manifest(
    manifest, path: str | os.PathLike, *, label_map_path=None
) -> pd.Series:
    """Look up the labels of every record of ``manifest`` in a labels file.

    ``path`` is a labels file written by ``dejavu annotate`` or a COCO instances
    JSON file (``.json``).

    Raises
    ------
    InputError
        If a record id is not in the file, or the file was written for a
        different image (content hash) of that id.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        from dejavu.annotate.coco import coco_frame_for_manifest

        frame = coco_frame_for_manifest(manifest, path, label_map_path=label_map_path)
        return _series(manifest, frame, path)
    frame, _ = read_labels_file(path)
    duplicated = frame["id"].duplicated()
    if duplicated.any():
        raise InputError(
            f"labels file {path}: id {frame.loc[duplicated, 'id'].iloc[0]!r} appears "
            "more than once; rewrite it with `dejavu annotate`"
        )
    by_id = frame.set_index("id")
    ids = manifest.frame["id"].astype(str).tolist()
    missing = [i for i in ids if i not in by_id.index]
    if missing:
        more = f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""
        raise InputError(
            f"labels file {path} has no labels for id {missing[0]!r} of the "
            f"{manifest.name} ({manifest.path}){more}; rerun `dejavu annotate` on "
            "that manifest"
        )
    if manifest.image_hashes is not None and "sha256" in by_id.columns:
        stored = by_id.loc[ids, "sha256"].tolist()
        for record_id, old, new in zip(ids, stored, manifest.image_hashes, strict=True):
            if old and new and old != new:
                raise InputError(
                    f"labels file {path} was made for a different image of id "
                    f"{record_id!r} (content hash differs) in the {manifest.name}; "
                    "rerun `dejavu annotate` on that manifest"
                )
    frame = by_id.loc[ids].reset_index()
    return _series(manifest, frame, path)


def _series(manifest, frame: pd.DataFrame, path: Path) -> pd.Series:
    labels = [sorted({str(label) for label in value}) for value in frame["labels"]]
    series = pd.Series(
        labels, index=pd.Index(frame["id"].astype(str), name="id"), name="labels"
    )
    series.attrs["skipped"] = []
    series.attrs["source"] = str(path)
    return series
