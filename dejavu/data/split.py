"""Split a user's manifest into target, reference, control and public sets.

The sets are disjoint by id and by image bytes. Records whose images are identical
byte for byte form one group, which is reported as duplicates and always goes to a
single set. With ``drop_duplicates``, only the group's first record is kept. Sizes are
counts or fractions of the usable records; records not needed by any set are left
out and counted.

Records are shuffled with the seed and dealt to the set furthest behind its share.
With ``stratify``, the dealing runs value by value of that column, so each set's mix
of values matches the whole manifest's to within about one record per value.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from dejavu._io import atomic_path, prepare_run_dir, stable_hash, write_json
from dejavu.data.manifest import TAR_PREFIX, read_manifest
from dejavu.errors import InputError

log = logging.getLogger(__name__)

SET_NAMES = ("target", "reference", "control", "public")
# Columns that read_manifest adds for messages; they are not part of the records.
_READER_COLUMNS = ("row", "file")


def split_manifest(
    data: str | os.PathLike,
    out: str | os.PathLike,
    sizes: Mapping[str, int | float],
    *,
    seed: int = 0,
    stratify: str | None = None,
    drop_duplicates: bool = False,
    skip_bad_records: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Split a manifest into disjoint record sets and write one manifest per set.

    Parameters
    ----------
    data : path-like
        The manifest to split, in any form :func:`dejavu.data.manifest.read_manifest`
        reads.
    out : path-like
        Output folder, following the usual rules: reused for the same command and
        settings, otherwise rejected when not empty unless ``overwrite``. It receives
        ``<set>.parquet`` and ``<set>.csv`` per set and ``split.json``.
    sizes : mapping of str to int or float
        Size of each of ``"target"``, ``"reference"``, ``"control"`` and
        ``"public"``: an ``int`` is a number of records, a ``float`` in (0, 1] a
        fraction of the usable records (rounded to the nearest record). Missing
        sets get no records.
    seed : int, default=0
    stratify : str, optional
        Column whose mix of values is kept equal across the sets. List values
        (such as ``objects``) count as one value each.
    drop_duplicates : bool, default=False
        Keep only the first record of each group of identical images instead of
        keeping the group together.
    skip_bad_records : bool, default=False
        Leave out records whose image is missing or cannot be decoded.
    overwrite : bool, default=False
    progress : bool, default=True
        Show a progress bar while reading and hashing images.

    Returns
    -------
    dict of str to pathlib.Path
        Set name to Parquet manifest, for every set with records.

    Raises
    ------
    InputError
        For an unknown set name, a negative or invalid size, sizes that add up to
        more records than there are, or a ``stratify`` column the manifest lacks.
    OutputDirError
        When ``out`` cannot be used.
    """
    _check_sizes(sizes)
    data = Path(data)
    manifest = read_manifest(
        data,
        set_name="data",
        require=("id", "image"),
        skip_bad_records=skip_bad_records,
        check_images=True,
        progress=progress,
    )
    frame = manifest.frame.reset_index(drop=True)
    if stratify is not None and stratify not in frame.columns:
        columns = ", ".join(c for c in frame.columns if c not in _READER_COLUMNS)
        raise InputError(
            f"cannot stratify by {stratify!r}: manifest {data} has no such column "
            f"(columns: {columns})"
        )

    groups = _duplicate_groups(manifest.image_hashes)
    duplicates = [[frame.at[i, "id"] for i in g] for g in groups if len(g) > 1]
    if duplicates:
        log.warning(
            "%d groups of identical images (%d records) in %s, e.g. ids %s",
            len(duplicates),
            sum(len(d) for d in duplicates),
            data,
            ", ".join(duplicates[0]),
        )
    if drop_duplicates:
        groups = [g[:1] for g in groups]
    usable = sum(len(g) for g in groups)
    counts = _resolve_counts(sizes, usable, data)

    rng = np.random.default_rng(seed)
    groups = [groups[i] for i in rng.permutation(len(groups))]
    strata = [_stratum(frame.at[g[0], stratify]) if stratify else "" for g in groups]
    assigned = _deal(groups, strata, counts, usable)

    settings = {
        "data": str(data.resolve()),
        "data_hash": stable_hash([list(manifest.ids), manifest.image_hashes]),
        "sizes": dict(sizes),
        "seed": seed,
        "stratify": stratify,
        "drop_duplicates": drop_duplicates,
        "skip_bad_records": skip_bad_records,
    }
    out = prepare_run_dir(out, "split", settings, overwrite=overwrite)
    records = _records_frame(frame, out)
    written = {}
    report_sets = {}
    for name in SET_NAMES:
        rows = sorted(assigned.get(name, []))
        if not rows:
            continue
        subset = records.iloc[rows].reset_index(drop=True)
        written[name] = _write_set(out, name, subset)
        report_sets[name] = {"records": len(rows), "requested": counts[name]}
        if stratify is not None:
            mix = frame.iloc[rows][stratify].map(_stratum).value_counts()
            report_sets[name]["mix"] = {str(k): int(v) for k, v in mix.items()}
    write_json(
        out / "split.json",
        {
            "data": str(data),
            "settings": settings,
            "records": len(frame),
            "usable_records": usable,
            "unassigned_records": len(assigned["unassigned"]),
            "sets": report_sets,
            "duplicate_groups": duplicates,
            "skipped": manifest.skipped,
        },
    )
    return written


def _check_sizes(sizes: Mapping[str, int | float]) -> None:
    unknown = [name for name in sizes if name not in SET_NAMES]
    if unknown:
        raise InputError(
            f"unknown set {', '.join(map(repr, unknown))}; sizes can be given for "
            f"{', '.join(SET_NAMES)}"
        )
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int | float | np.number):
            raise InputError(f"size of the {name} set {size!r} is not a number")
        if isinstance(size, float | np.floating) and not 0.0 < size <= 1.0:
            raise InputError(
                f"size of the {name} set {size!r} is a fraction outside (0, 1]; "
                "give a fraction such as 0.25 or a whole number of records"
            )
        if size < 0:
            raise InputError(f"size of the {name} set {size!r} is negative")
    if not any(size > 0 for size in sizes.values()):
        raise InputError(
            "no set sizes given; give at least one of target, reference, control, "
            "public a count or fraction above 0"
        )


def _resolve_counts(sizes, usable: int, data: Path) -> dict[str, int]:
    counts = {name: 0 for name in SET_NAMES}
    fractions = {}
    for name, size in sizes.items():
        if isinstance(size, float | np.floating):
            fractions[name] = float(size)
        else:
            counts[name] = int(size)
    if fractions:
        # Largest-remainder rounding: the fractional sets together get the rounded
        # total of their fractions (never more than the records left), split by
        # their floors plus one record for each of the largest remainders.
        exact = {name: f * usable for name, f in fractions.items()}
        left = max(0, usable - sum(counts.values()))
        total = min(round(sum(exact.values())), left)
        for name, value in exact.items():
            counts[name] = int(np.floor(value))
        spare = total - sum(counts[name] for name in fractions)
        by_remainder = sorted(
            fractions, key=lambda n: exact[n] - counts[n], reverse=True
        )
        for name in by_remainder[: max(0, spare)]:
            counts[name] += 1
    total = sum(counts.values())
    if total > usable:
        requested = ", ".join(f"{name} {n}" for name, n in counts.items() if n)
        raise InputError(
            f"the sets ask for {total} records ({requested}) but {data} has {usable} "
            "usable records (identical images count once when dropped); lower the "
            "sizes"
        )
    return counts


def _duplicate_groups(hashes: list[str]) -> list[list[int]]:
    """Group row positions by image hash, in order of first appearance."""
    positions: dict[str, list[int]] = {}
    for i, digest in enumerate(hashes):
        positions.setdefault(digest, []).append(i)
    return list(positions.values())


def _stratum(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return json.dumps(sorted(map(str, value)))
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _deal(
    groups: list[list[int]], strata: list[str], counts: dict[str, int], usable: int
) -> dict[str, list[int]]:
    """Assign groups of records to sets, keeping every stratum's mix.

    First each stratum's records are dealt, one at a time and strata in turn, to
    the set furthest behind its share ``counts[s] * dealt / usable``. Records beyond
    the requested total go to an "unassigned" pseudo-set. This fixes how many
    records of each stratum every set gets: the totals equal ``counts`` and each
    stratum's split is within one record of proportional. Then, within a stratum,
    groups of identical images are placed first, each in the set with the most room
    left, and single records fill the rest exactly. A group too large for any set's
    room in its stratum overshoots, so counts can then differ by a few records.
    """
    quotas = dict(counts)
    quotas["unassigned"] = usable - sum(counts.values())
    names = list(quotas)

    sizes: dict[str, int] = {}
    for group, stratum in zip(groups, strata, strict=True):
        sizes[stratum] = sizes.get(stratum, 0) + len(group)
    room = {stratum: dict.fromkeys(names, 0) for stratum in sizes}
    dealt_to = dict.fromkeys(names, 0)
    dealt = 0
    for stratum, size in sizes.items():
        for _ in range(size):
            dealt += 1
            deficits = [quotas[n] * dealt / usable - dealt_to[n] for n in names]
            name = names[int(np.argmax(deficits))]
            room[stratum][name] += 1
            dealt_to[name] += 1

    assigned: dict[str, list[int]] = {name: [] for name in names}
    # A stable sort: groups of several records first, random order otherwise.
    order = sorted(range(len(groups)), key=lambda i: len(groups[i]) == 1)
    for i in order:
        group, left = groups[i], room[strata[i]]
        fitting = [n for n in names if left[n] >= len(group)] or names
        name = max(fitting, key=left.__getitem__)
        assigned[name].extend(group)
        left[name] -= len(group)
    return assigned


def _records_frame(frame: pd.DataFrame, out: Path) -> pd.DataFrame:
    records = frame.drop(columns=[c for c in _READER_COLUMNS if c in frame.columns])
    records["image"] = [_relative_image(ref, out) for ref in records["image"]]
    for column in records.columns:
        records[column] = [_plain(v) for v in records[column]]
    return records


def _relative_image(ref: str, out: Path) -> str:
    # Paths are written relative to the new manifests so that the output folder
    # and the images can move together; images inside shards keep their reference.
    if ref.startswith(TAR_PREFIX):
        return ref
    return os.path.relpath(ref, out.resolve())


def _plain(value):
    # Parquet list columns come back as NumPy arrays, nested for boxes.
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _write_set(out: Path, name: str, records: pd.DataFrame) -> Path:
    path = out / f"{name}.parquet"
    with atomic_path(path) as tmp:
        records.to_parquet(tmp, index=False)
    csv = records.copy()
    for column in csv.columns:
        if any(isinstance(v, list | dict) for v in csv[column]):
            csv[column] = [json.dumps(v) for v in csv[column]]
    with atomic_path(out / f"{name}.csv") as tmp:
        csv.to_csv(tmp, index=False, lineterminator="\n")
    return path
