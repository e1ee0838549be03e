"""Annotate a manifest: detect with a cache, or import labels; write a labels file."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import UnidentifiedImageError

from dejavu._io import package_versions, sha256_bytes
from dejavu.annotate.labelmap import (
    apply_label_map,
    check_label_map,
    load_label_map,
    map_vocabulary,
)
from dejavu.annotate.labels_file import COLUMNS, write_labels_file
from dejavu.errors import InputError

logger = logging.getLogger(__name__)

#: Detector options that :func:`detect_manifest` accepts, with their defaults.
DETECTOR_DEFAULTS: dict[str, Any] = {
    "conf": 0.25,
    "imgsz": None,
    "batch_size": 16,
    "device": None,
    "classes": None,
    "label_map": None,
}

#: Images decoded, detected and written to the cache per chunk.
CHUNK_SIZE = 256


@dataclass
class AnnotationResult:
    """Labels of a record set and where they came from.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per annotated record, in manifest order, with the columns of a
        labels file (``id``, ``sha256``, ``labels``, ``box_labels``, ``boxes``,
        ``scores``).
    metadata : dict
        ``vocabulary``, ``source``, ``settings``, ``label_map`` and ``versions``.
    skipped : list of dict
        Records whose image could not be decoded: ``set``, ``file``, ``row``,
        ``id`` and ``reason``.
    detected : int
        Images the detector ran on (not found in the cache).
    """

    frame: pd.DataFrame
    metadata: dict[str, Any]
    skipped: list[dict] = field(default_factory=list)
    detected: int = 0

    def labels_series(self) -> pd.Series:
        """Return the labels as :func:`dejavu.annotate.resolve_labels` does."""
        series = pd.Series(
            [list(v) for v in self.frame["labels"]],
            index=pd.Index(self.frame["id"].astype(str), name="id"),
            name="labels",
        )
        series.attrs["skipped"] = list(self.skipped)
        series.attrs["source"] = self.metadata.get("source")
        return series


def _options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = sorted(set(options) - set(DETECTOR_DEFAULTS))
    if unknown:
        raise InputError(
            f"unknown detector option {', '.join(map(repr, unknown))}; valid options "
            f"are {', '.join(DETECTOR_DEFAULTS)}"
        )
    return {**DETECTOR_DEFAULTS, **options}


def _check_not_empty(manifest) -> None:
    if len(manifest.frame) == 0:
        raise InputError(
            f"the {manifest.name} ({manifest.path}) has no records to annotate; "
            "check the manifest"
        )


def detect_manifest(
    manifest,
    detector,
    *,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad_records: bool = False,
    progress: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> AnnotationResult:
    """Run a detector on every image of a manifest, reusing cached detections.

    Parameters
    ----------
    manifest : dejavu.data.manifest.Manifest
        The record set.
    detector : path-like, str or YoloDetector
        Weights (local file or published name) or a loaded detector.
    options : mapping, optional
        Keys of :data:`DETECTOR_DEFAULTS`: ``conf``, ``imgsz`` (pixels),
        ``batch_size`` (images), ``device``, ``classes`` (list of class names)
        and ``label_map`` (path of a YAML label map).
    cache_dir : path-like, optional
        Folder of the detection cache; without it nothing is cached.
    skip_bad_records : bool, default=False
        Leave out records whose image cannot be read or decoded instead of
        raising; they are listed in :attr:`AnnotationResult.skipped`.
    progress : bool, default=True
        Show a progress bar over the images to detect.
    chunk_size : int, default=256
        Images per cache part. A rerun after an interruption repeats at most one
        chunk.

    Returns
    -------
    AnnotationResult

    Raises
    ------
    InputError
        If the manifest is empty, an option is invalid, the label map names a class
        the detector lacks, or an image is bad and ``skip_bad_records`` is false.
    ModelLoadError
        If the weights are missing or cannot be loaded.
    """
    from tqdm.auto import tqdm

    from dejavu.annotate.cache import DetectionCache
    from dejavu.annotate.yolo import YoloDetector, ultralytics_version
    from dejavu.data.manifest import decode_image, read_image_bytes

    _check_not_empty(manifest)
    opts = _options(options)
    mapping = load_label_map(opts["label_map"]) if opts["label_map"] else {}
    if not isinstance(detector, YoloDetector):
        detector = YoloDetector(
            detector,
            conf=opts["conf"],
            imgsz=opts["imgsz"],
            batch_size=opts["batch_size"],
            device=opts["device"],
            classes=opts["classes"],
        )
    check_label_map(
        mapping,
        detector.names.values(),
        source=f"detector {detector.weights}",
        path=opts["label_map"],
    )
    settings = detector.settings()
    versions = {**package_versions(), "ultralytics": ultralytics_version()}

    cache = None
    cached = {}
    if cache_dir is not None:
        key_settings = {k: v for k, v in settings.items() if k != "weights"}
        cache = DetectionCache(cache_dir, {**key_settings, "versions": versions})
        cached = cache.load()

    frame = manifest.frame
    hashes = list(manifest.image_hashes) if manifest.image_hashes else None
    digests: list[str | None] = list(hashes) if hashes else [None] * len(frame)
    todo = [i for i, d in enumerate(digests) if not d or d not in cached]
    logger.info(
        "%s: %d images, %d in the detection cache, %d to detect",
        manifest.name,
        len(frame),
        len(frame) - len(todo),
        len(todo),
    )

    skipped: list[dict] = []
    detected = 0
    bar = tqdm(total=len(todo), desc=f"detect {manifest.name}", disable=not progress)
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        images, chunk_digests = [], []
        for i in chunk:
            row = frame.iloc[i]
            try:
                data = read_image_bytes(row["image"])
                digests[i] = sha256_bytes(data)
                if digests[i] in cached or digests[i] in chunk_digests:
                    # Known content under another id, or the manifest had no hashes.
                    bar.update(1)
                    continue
                image = decode_image(data)
            except _BAD_IMAGE as err:
                bad = _bad_record(manifest, row, err)
                if not skip_bad_records:
                    raise InputError(
                        f"{bad['set']}: {bad['file']} row {bad['row']} (id "
                        f"{bad['id']!r}): {bad['reason']}; fix the image or pass "
                        "--skip-bad-records to leave it out"
                    ) from err
                skipped.append(bad)
                bar.update(1)
                continue
            images.append(image)
            chunk_digests.append(digests[i])
        found = detector.detect(images) if images else []
        detected += len(found)
        cached.update(zip(chunk_digests, found, strict=True))
        if cache is not None and found:
            cache.add(chunk_digests, found)
        bar.update(len(images))
    bar.close()

    skipped_ids = {bad["id"] for bad in skipped}
    rows = []
    for i, record_id in enumerate(frame["id"].astype(str)):
        if record_id in skipped_ids:
            continue
        found = cached[digests[i]]
        mapped = apply_label_map(found.classes, mapping)
        keep = [j for j, label in enumerate(mapped) if label]
        rows.append(
            {
                "id": record_id,
                "sha256": digests[i],
                "labels": sorted({mapped[j] for j in keep}),
                "box_labels": [mapped[j] for j in keep],
                "boxes": found.boxes[keep].tolist(),
                "scores": found.scores[keep].tolist(),
            }
        )
    metadata = {
        "source": "detector",
        "vocabulary": map_vocabulary(detector.vocabulary, mapping),
        "settings": {**settings, "batch_size": detector.batch_size},
        "label_map": mapping,
        "label_map_file": str(opts["label_map"]) if opts["label_map"] else None,
        "versions": versions,
    }
    return AnnotationResult(
        frame=pd.DataFrame(rows, columns=list(COLUMNS)),
        metadata=metadata,
        skipped=skipped,
        detected=detected,
    )


# Errors that mean "this image is bad", as dejavu.data.manifest raises them.
_BAD_IMAGE = (FileNotFoundError, UnidentifiedImageError, OSError, ValueError)


def _bad_record(manifest, row, err: Exception) -> dict:
    if isinstance(err, FileNotFoundError):
        reason = f"image {row['image']} does not exist"
    elif isinstance(err, UnidentifiedImageError):
        reason = f"image {row['image']} is not an image file"
    else:
        reason = f"image {row['image']} cannot be decoded: {err}"
    return {
        "set": manifest.name,
        "file": str(row.get("file", manifest.path)),
        "row": int(row["row"]) if "row" in row else None,
        "id": str(row["id"]),
        "reason": reason,
    }


def import_coco(
    manifest, coco_file: str | os.PathLike, *, label_map=None
) -> AnnotationResult:
    """Take labels and boxes of a manifest's records from a COCO instances file.

    Raises
    ------
    InputError
        If the manifest is empty, a record has no COCO image, or the label map
        names a category the file lacks.
    """
    from dejavu.annotate.coco import coco_frame_for_manifest, read_coco

    _check_not_empty(manifest)
    frame = coco_frame_for_manifest(manifest, coco_file, label_map_path=label_map)
    mapping = load_label_map(label_map) if label_map else {}
    categories = read_coco(coco_file).categories.values()
    metadata = {
        "source": "coco",
        "vocabulary": map_vocabulary(categories, mapping),
        "settings": {"coco_file": str(Path(coco_file).resolve())},
        "label_map": mapping,
        "label_map_file": str(label_map) if label_map else None,
        "versions": package_versions(),
    }
    return AnnotationResult(frame=frame, metadata=metadata)


def annotate(
    manifest,
    out: str | os.PathLike,
    *,
    detector=None,
    coco_file: str | os.PathLike | None = None,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | os.PathLike | None = None,
    skip_bad_records: bool = False,
    progress: bool = True,
) -> AnnotationResult:
    """Annotate a manifest and write the labels file ``out``.

    Exactly one of ``detector`` and ``coco_file`` is given. The file is written
    atomically, only after every image is done, so a failed run leaves no labels
    file (its finished chunks stay in the cache).

    Parameters
    ----------
    manifest : dejavu.data.manifest.Manifest
    out : path-like
        The Parquet labels file to write.
    detector : path-like or str, optional
        Detector weights; see :func:`detect_manifest`.
    coco_file : path-like, optional
        A COCO instances JSON file to import instead of detecting.
    options, cache_dir, skip_bad_records, progress
        As for :func:`detect_manifest`. With ``coco_file`` only
        ``options["label_map"]`` is used.

    Returns
    -------
    AnnotationResult
    """
    if (detector is None) == (coco_file is None):
        raise InputError("pass exactly one of a detector and a COCO file to annotate")
    if coco_file is not None:
        label_map = (options or {}).get("label_map")
        result = import_coco(manifest, coco_file, label_map=label_map)
    else:
        result = detect_manifest(
            manifest,
            detector,
            options=options,
            cache_dir=cache_dir,
            skip_bad_records=skip_bad_records,
            progress=progress,
        )
    metadata = {
        **result.metadata,
        "manifest": str(manifest.path),
        "set": manifest.name,
        "skipped": result.skipped,
    }
    write_labels_file(out, result.frame, metadata)
    return result
