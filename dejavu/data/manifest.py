"""Record manifests: reading, validating and opening their images.

A manifest lists one record per row with an ``id``, an ``image`` and usually a
``caption`` and ``objects``. Supported formats:

- CSV (``.csv``) and TSV (``.tsv``) with a header row. ``objects`` is a JSON list
  (``["dog", "bicycle"]``) or a ``|``-separated string (``dog|bicycle``).
- JSON Lines (``.jsonl``, ``.json``), one object per line.
- Parquet (``.parquet``), where ``objects`` is a list column.
- WebDataset shards in img2dataset's layout: a ``.tar`` file or a folder of them,
  each record being ``KEY.jpg`` (or ``.png``, ``.webp``), ``KEY.txt`` (the caption)
  and ``KEY.json`` (metadata, optionally with ``objects``). The id is the key.

Image paths in table manifests are relative to the manifest's folder unless absolute.
Images inside shards are referred to as ``tar://SHARD#MEMBER``. Row numbers in
messages count data rows from 1, not counting the header.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from dejavu._io import sha256_bytes
from dejavu.errors import InputError

log = logging.getLogger(__name__)

TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
TAR_PREFIX = "tar://"


@dataclass
class Manifest:
    """A record set read from disk.

    Attributes
    ----------
    path : pathlib.Path
        The manifest file, shard or folder of shards.
    name : str
        What the set is called in messages, such as ``"target set"``.
    frame : pandas.DataFrame
        One row per valid record, in file order, with columns ``id`` (str),
        ``image`` (absolute path or ``tar://SHARD#MEMBER``), ``row`` (1-based data
        row, or position within the shard), ``file`` (the file the row came from),
        ``caption`` and ``objects`` (list of str) when present, and any other
        columns of the manifest.
    skipped : list of dict
        Rows left out because ``skip_bad_records`` was set: ``set``, ``file``,
        ``row``, ``id`` and ``reason``.
    image_hashes : list of str or None
        SHA-256 of each kept record's image bytes, aligned with ``frame``, when the
        images were checked.
    """

    path: Path
    name: str
    frame: pd.DataFrame
    skipped: list[dict] = field(default_factory=list)
    image_hashes: list[str] | None = None

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> list[str]:
        """Record ids in file order."""
        return self.frame["id"].tolist()

    @property
    def has_objects(self) -> bool:
        """Whether the manifest carries an ``objects`` column."""
        return "objects" in self.frame.columns


def read_manifest(
    path: str | os.PathLike,
    *,
    set_name: str = "target set",
    require: Sequence[str] = ("id", "image"),
    skip_bad_records: bool = False,
    check_images: bool = True,
    progress: bool = False,
) -> Manifest:
    """Read and validate a manifest.

    Parameters
    ----------
    path : path-like
        A CSV, TSV, JSONL or Parquet file, a WebDataset ``.tar`` shard, or a folder
        of shards.
    set_name : str, default="target set"
        Name of the set in error messages.
    require : sequence of str, default=("id", "image")
        Columns every row must have. ``caption`` in this list also rejects empty
        captions; ``objects`` rejects rows without that column's value.
    skip_bad_records : bool, default=False
        Leave out rows with a missing or undecodable image, an empty required
        value, or a row that cannot be parsed, and list them in
        :attr:`Manifest.skipped`, instead of raising.
    check_images : bool, default=True
        Read and decode every image, recording its SHA-256. Without it, a bad image
        surfaces only when it is opened.
    progress : bool, default=False
        Show a progress bar while checking images.

    Returns
    -------
    Manifest

    Raises
    ------
    InputError
        If the file is missing or unreadable, a required column is missing, ids
        repeat, or a row is bad and ``skip_bad_records`` is false.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{set_name} manifest {path} does not exist; check the path")
    rows, bad = _read_rows(path, set_name)
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["id", "image", "row", "file"])

    missing = [col for col in require if col not in frame.columns]
    if missing:
        present = ", ".join(c for c in frame.columns if c not in ("row", "file"))
        raise InputError(
            f"{set_name} manifest {path} has no column {', '.join(map(repr, missing))} "
            f"(columns found: {present or 'none'}); add the column to the manifest"
        )

    frame, more_bad = _normalise(frame, path, set_name, require)
    bad.extend(more_bad)
    _check_duplicate_ids(frame, path, set_name)

    hashes = None
    if check_images and len(frame):
        hashes, image_bad = _check_images(frame, set_name, progress)
        bad.extend(image_bad)

    if bad:
        bad.sort(key=lambda b: (str(b["file"]), b["row"]))
        if not skip_bad_records:
            first = bad[0]
            more = f" ({len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
            raise InputError(
                f"{set_name}: {first['file']} row {first['row']} (id {first['id']!r}): "
                f"{first['reason']}{more}; fix the record or pass --skip-bad-records "
                "to leave bad records out"
            )
        bad_keys = {(str(b["file"]), b["row"]) for b in bad}
        keep = [
            (str(f), r) not in bad_keys
            for f, r in zip(frame["file"], frame["row"], strict=True)
        ]
        if hashes is not None:
            hashes = [h for h, k in zip(hashes, keep, strict=True) if k]
        frame = frame[keep].reset_index(drop=True)
        for b in bad:
            b["set"] = set_name
            b["file"] = str(b["file"])
        log.warning("%s: skipped %d bad records", set_name, len(bad))
    return Manifest(
        path=path, name=set_name, frame=frame, skipped=bad, image_hashes=hashes
    )


def _read_rows(path: Path, set_name: str) -> tuple[list[dict], list[dict]]:
    """Return parsed rows and the rows that could not be parsed."""
    if path.is_dir():
        shards = sorted(path.glob("*.tar"))
        if not shards:
            raise InputError(
                f"{set_name} folder {path} contains no .tar shards; pass a manifest "
                "file (CSV, TSV, JSONL, Parquet) or a folder of WebDataset shards"
            )
        rows, bad = [], []
        for shard in shards:
            shard_rows, shard_bad = _read_shard(shard, set_name)
            rows.extend(shard_rows)
            bad.extend(shard_bad)
        return rows, bad
    suffix = path.suffix.lower()
    if suffix == ".tar":
        return _read_shard(path, set_name)
    if suffix not in TABLE_SUFFIXES:
        raise InputError(
            f"{set_name} manifest {path} has an unknown format {suffix!r}; use .csv, "
            ".tsv, .jsonl, .parquet or WebDataset .tar shards"
        )
    try:
        if suffix == ".parquet":
            return _read_parquet(path), []
        if suffix in (".jsonl", ".json"):
            return _read_jsonl(path)
        return _read_delimited(path, "\t" if suffix == ".tsv" else ",")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(
            f"cannot read {set_name} manifest {path}: {err}; check the file"
        ) from err


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"cannot read Parquet manifest {path}: {err}") from err
    rows = table.to_pylist()
    for i, row in enumerate(rows, start=1):
        row["row"], row["file"] = i, str(path)
    return rows


def _read_jsonl(path: Path) -> tuple[list[dict], list[dict]]:
    rows, bad = [], []
    with open(path, encoding="utf-8-sig") as f:
        n = 0
        for line in f:
            if not line.strip():
                continue
            n += 1
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("the line is not a JSON object")
            except ValueError as err:
                bad.append(_bad(path, n, None, f"cannot parse the line as JSON: {err}"))
                continue
            row["row"], row["file"] = n, str(path)
            rows.append(row)
    return rows, bad


def _read_delimited(path: Path, delimiter: str) -> tuple[list[dict], list[dict]]:
    import csv

    rows, bad = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return [], []
        header = [h.strip() for h in header]
        for n, values in enumerate(reader, start=1):
            if not values:
                continue
            if len(values) != len(header):
                row_id = values[header.index("id")] if "id" in header else None
                bad.append(
                    _bad(
                        path,
                        n,
                        row_id,
                        f"the row has {len(values)} fields but the header has "
                        f"{len(header)}",
                    )
                )
                continue
            row = dict(zip(header, values, strict=True))
            row["row"], row["file"] = n, str(path)
            rows.append(row)
    return rows, bad


def _read_shard(shard: Path, set_name: str) -> tuple[list[dict], list[dict]]:
    try:
        tar = tarfile.open(shard)
    except (tarfile.TarError, OSError) as err:
        raise InputError(
            f"cannot read {set_name} shard {shard}: {err}; check the file"
        ) from err
    records: dict[str, dict] = {}
    with tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            key, _, ext = member.name.rpartition(".")
            ext = "." + ext.lower()
            rec = records.setdefault(key, {})
            if ext in IMAGE_SUFFIXES:
                rec["image"] = f"{TAR_PREFIX}{shard.resolve()}#{member.name}"
            elif ext in (".txt", ".json"):
                rec[ext] = tar.extractfile(member).read()
    rows, bad = [], []
    for n, (key, rec) in enumerate(records.items(), start=1):
        row = {"id": Path(key).name, "row": n, "file": str(shard)}
        if "image" in rec:
            row["image"] = rec["image"]
        if ".txt" in rec:
            row["caption"] = rec[".txt"].decode("utf-8", errors="replace").strip()
        if ".json" in rec:
            try:
                meta = json.loads(rec[".json"])
            except ValueError as err:
                bad.append(_bad(shard, n, row["id"], f"{key}.json is not JSON: {err}"))
                continue
            for name in ("objects", "caption", "id"):
                if name in meta and meta[name] is not None and name not in row:
                    row[name] = meta[name]
        rows.append(row)
    return rows, bad


def _normalise(
    frame: pd.DataFrame, path: Path, set_name: str, require: Sequence[str]
) -> tuple[pd.DataFrame, list[dict]]:
    """Turn columns into their canonical types and collect rows with empty values."""
    bad = []
    frame = frame.copy()
    frame["id"] = [_as_text(v) for v in frame["id"]]
    if "image" in frame.columns:
        base = path.parent if path.is_file() else path
        frame["image"] = [_resolve_image(v, base) for v in frame["image"]]
    if "caption" in frame.columns:
        frame["caption"] = [_as_text(v) for v in frame["caption"]]
    if "objects" in frame.columns:
        parsed = []
        for value, row, file in zip(frame["objects"], frame["row"], frame["file"]):
            try:
                parsed.append(parse_objects(value))
            except ValueError as err:
                parsed.append(None)
                bad.append(_bad(file, row, None, str(err)))
        frame["objects"] = parsed
    for column in require:
        for row_id, row, file, value in zip(
            frame["id"], frame["row"], frame["file"], frame[column], strict=True
        ):
            if value is None or (isinstance(value, str) and not value.strip()):
                bad.append(_bad(file, row, row_id, f"the {column} is empty"))
    # An id found in a bad row is more useful in the message than None.
    ids = {(str(f), r): i for f, r, i in zip(frame["file"], frame["row"], frame["id"])}
    for b in bad:
        b["id"] = b["id"] or ids.get((str(b["file"]), b["row"]))
    return frame, bad


def parse_objects(value) -> list[str] | None:
    """Parse an ``objects`` value into a list of labels.

    Accepts a list (Parquet, JSONL), a JSON list string, or a ``|``-separated string.
    Returns None for a missing value and ``[]`` for an empty one.

    Examples
    --------
    >>> parse_objects('["dog", "bicycle"]')
    ['dog', 'bicycle']
    >>> parse_objects("dog|bicycle")
    ['dog', 'bicycle']
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as err:
            raise ValueError(
                f"objects value {text!r} is not a JSON list: {err}"
            ) from err
        return [str(v).strip() for v in items if str(v).strip()]
    return [part.strip() for part in text.split("|") if part.strip()]


def _as_text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value).strip()


def _resolve_image(value, base: Path) -> str | None:
    text = _as_text(value)
    if not text or text.startswith(TAR_PREFIX):
        return text
    image = Path(text)
    return str(image if image.is_absolute() else (base / image).resolve())


def _check_duplicate_ids(frame: pd.DataFrame, path: Path, set_name: str) -> None:
    duplicated = frame["id"].duplicated(keep=False)
    if duplicated.any():
        first_id = frame.loc[duplicated, "id"].iloc[0]
        rows = frame.loc[frame["id"] == first_id, "row"].tolist()
        count = frame.loc[duplicated, "id"].nunique()
        raise InputError(
            f"{set_name} manifest {path}: id {first_id!r} appears in rows "
            f"{', '.join(map(str, rows))} ({count} ids repeat); ids must be unique"
        )


def _check_images(
    frame: pd.DataFrame, set_name: str, progress: bool
) -> tuple[list[str], list[dict]]:
    from tqdm.auto import tqdm

    hashes, bad = [], []
    items = zip(frame["image"], frame["id"], frame["row"], frame["file"], strict=True)
    for ref, row_id, row, file in tqdm(
        items, total=len(frame), desc=f"check {set_name}", disable=not progress
    ):
        if ref is None:
            hashes.append("")
            continue
        try:
            data = read_image_bytes(ref)
            decode_image(data)
        except FileNotFoundError:
            bad.append(_bad(file, row, row_id, f"image {ref} does not exist"))
            hashes.append("")
            continue
        except UnidentifiedImageError:
            bad.append(_bad(file, row, row_id, f"image {ref} is not an image file"))
            hashes.append("")
            continue
        except (OSError, ValueError) as err:
            bad.append(_bad(file, row, row_id, f"image {ref} cannot be decoded: {err}"))
            hashes.append("")
            continue
        hashes.append(sha256_bytes(data))
    return hashes, bad


def _bad(file, row: int, row_id: str | None, reason: str) -> dict:
    return {"file": str(file), "row": int(row), "id": row_id, "reason": reason}


def read_image_bytes(ref: str) -> bytes:
    """Return the bytes of an image given as a path or ``tar://SHARD#MEMBER``."""
    if ref.startswith(TAR_PREFIX):
        shard, _, member = ref[len(TAR_PREFIX) :].partition("#")
        tar = _open_tar(shard)
        try:
            handle = tar.extractfile(member)
        except KeyError:
            raise FileNotFoundError(ref) from None
        if handle is None:
            raise FileNotFoundError(ref)
        return handle.read()
    with open(ref, "rb") as f:
        return f.read()


@functools.lru_cache(maxsize=16)
def _open_tar(shard: str) -> tarfile.TarFile:
    return tarfile.open(shard)


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes fully and return an RGB image.

    Raises OSError, ValueError or PIL.UnidentifiedImageError when the bytes are not
    a complete image, including truncated files.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")


def open_image(ref: str) -> Image.Image:
    """Open an image given as a path or ``tar://SHARD#MEMBER`` as RGB."""
    return decode_image(read_image_bytes(ref))


def iter_image_batches(
    refs: Sequence[str], batch_size: int
) -> Iterable[list[Image.Image]]:
    """Yield lists of up to ``batch_size`` decoded images, in order.

    Only one batch is held in memory at a time.
    """
    for start in range(0, len(refs), batch_size):
        yield [open_image(ref) for ref in refs[start : start + batch_size]]
