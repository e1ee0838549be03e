"""On-disk cache of detections, keyed by image content and detector settings.

A cache folder ``CACHE_DIR/detections-<key>`` belongs to one detector setting:
``<key>`` hashes the weights' SHA-256, the confidence threshold, the inference size,
the class restriction and the package versions. Inside it, each completed chunk of
images is one Parquet part (``part-<n>.parquet``) with columns ``sha256``,
``classes``, ``boxes`` and ``scores``, written to a temporary name and renamed. An
interrupted run therefore loses at most the chunk in progress, and a rerun on a grown
manifest detects only images whose content hash is in no part.

The label map is applied after the cache, so changing it needs no new detections.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dejavu._io import atomic_path, stable_hash, write_json
from dejavu.annotate.yolo import Detections

logger = logging.getLogger(__name__)

_SCHEMA = pa.schema(
    [
        ("sha256", pa.string()),
        ("classes", pa.list_(pa.string())),
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ("scores", pa.list_(pa.float32())),
    ]
)


class DetectionCache:
    """Detections of one detector setting, stored as Parquet parts in a folder.

    Parameters
    ----------
    cache_dir : path-like
        Parent folder; the cache uses a subfolder named after the key.
    key_settings : dict
        Everything that determines the detections (settings and versions).
    """

    def __init__(self, cache_dir: str | os.PathLike, key_settings: dict[str, Any]):
        self.key = stable_hash(key_settings)
        self.folder = Path(cache_dir) / f"detections-{self.key[:16]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / "settings.json", key_settings)

    def load(self) -> dict[str, Detections]:
        """Return every cached detection, by image SHA-256."""
        found: dict[str, Detections] = {}
        for part in sorted(self.folder.glob("part-*.parquet")):
            try:
                table = pq.read_table(part)
            except (OSError, pa.ArrowInvalid) as err:
                # A part is renamed into place only when complete, so an unreadable
                # one was damaged afterwards; its images are detected again.
                logger.warning("ignoring unreadable cache part %s: %s", part, err)
                continue
            columns = table.to_pydict()
            for digest, classes, boxes, scores in zip(
                columns["sha256"],
                columns["classes"],
                columns["boxes"],
                columns["scores"],
                strict=True,
            ):
                found[digest] = Detections(
                    classes=list(classes),
                    boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                    scores=np.asarray(scores, np.float32),
                )
        return found

    def add(self, digests: Sequence[str], detections: Sequence[Detections]) -> Path:
        """Write one part with the detections of ``digests``."""
        existing = [p.stem for p in self.folder.glob("part-*.parquet")]
        number = 1 + max((int(name.split("-")[1]) for name in existing), default=-1)
        table = pa.table(
            {
                "sha256": list(digests),
                "classes": [list(d.classes) for d in detections],
                "boxes": [d.boxes.reshape(-1, 4).tolist() for d in detections],
                "scores": [d.scores.tolist() for d in detections],
            },
            schema=_SCHEMA,
        )
        path = self.folder / f"part-{number:06d}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path
