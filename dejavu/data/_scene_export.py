"""Extra copies of a scene set: YOLO detection layout and WebDataset shards.

WebDataset shards follow img2dataset's layout (``00000.tar``, ``00001.tar``, ...,
each record being ``KEY.jpg``, ``KEY.txt`` with the caption and ``KEY.json`` with the
metadata). Tar headers carry a fixed time, owner and mode so that the same records
give byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image

from dejavu._io import write_text

# Records per shard; img2dataset's default number of samples per shard.
SHARD_SIZE = 10_000
# 2000-01-01T00:00:00Z: a fixed modification time for every tar member.
TAR_MTIME = 946_684_800
JPEG_QUALITY = 95


def encode_jpeg(image: Image.Image) -> bytes:
    """Return ``image`` encoded as JPEG at the quality used for shards."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


class ShardWriter:
    """Write records into numbered tar shards in a folder.

    Each shard is written under a temporary name and renamed when it is complete.
    """

    def __init__(self, folder: Path, shard_size: int = SHARD_SIZE):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self._count = 0
        self._shard = 0
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None

    def add(self, key: str, jpeg: bytes, size: tuple[int, int], meta: dict) -> None:
        """Append one record: JPEG bytes, the caption, and ``meta`` as JSON.

        ``size`` is the image's (width, height) in pixels.
        """
        if self._tar is None:
            self._open()
        record = {
            "key": key,
            "status": "success",
            "width": size[0],
            "height": size[1],
            **{k: v for k, v in meta.items() if k not in ("id", "image")},
        }
        self._member(f"{key}.jpg", jpeg)
        self._member(f"{key}.txt", meta["caption"].encode("utf-8"))
        self._member(f"{key}.json", json.dumps(record).encode("utf-8"))
        self._count += 1
        if self._count == self.shard_size:
            self._finish()

    def close(self) -> None:
        """Finish the shard being written, if any."""
        if self._tar is not None:
            self._finish()

    def _open(self) -> None:
        self._tmp = self.folder / f".{self._shard:05d}.tar.tmp"
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)

    def _member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = TAR_MTIME
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def _finish(self) -> None:
        self._tar.close()
        os.replace(self._tmp, self.folder / f"{self._shard:05d}.tar")
        self._tar = None
        self._shard += 1
        self._count = 0


def write_yolo(
    out: Path,
    frame: pd.DataFrame,
    names: Sequence[str],
    val_fraction: float,
    size: int,
) -> Path:
    """Copy a split into ultralytics' YOLO layout under ``out/yolo``.

    Every ``round(1 / val_fraction)``-th record goes to the validation part, so the
    assignment of a record does not depend on the split's size. With fewer records
    than that, the last record is used for validation (and also for training when it
    is the only one).

    Returns
    -------
    pathlib.Path
        The ``data.yaml`` file. It has no ``path`` key, so ultralytics resolves
        ``images/train`` and ``images/val`` against the yaml file's own folder.
    """
    root = out / "yolo"
    period = max(1, round(1.0 / val_fraction))
    parts = [
        "val" if (i % period) == period - 1 else "train" for i in range(len(frame))
    ]
    if "val" not in parts:
        parts[-1] = "val"
    for part in ("train", "val"):
        (root / "images" / part).mkdir(parents=True, exist_ok=True)
        (root / "labels" / part).mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(names)}
    for part, row in zip(parts, frame.itertuples(index=False), strict=True):
        destinations = [part] if len(frame) > 1 else ["train", "val"]
        lines = []
        for label, (x1, y1, x2, y2) in zip(row.objects, row.boxes, strict=True):
            cx, cy = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size
            w, h = (x2 - x1) / size, (y2 - y1) / size
            lines.append(f"{index[label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        for destination in destinations:
            suffix = Path(row.image).suffix
            shutil.copyfile(
                out / row.image, root / "images" / destination / f"{row.id}{suffix}"
            )
            label_path = root / "labels" / destination / f"{row.id}.txt"
            write_text(label_path, "\n".join(lines) + "\n")
    data = {
        "train": "images/train",
        "val": "images/val",
        "nc": len(names),
        "names": dict(enumerate(names)),
    }
    path = root / "data.yaml"
    header = "# Scene detector data set written by `dejavu scenes`.\n"
    write_text(path, header + yaml.safe_dump(data, sort_keys=False))
    return path
