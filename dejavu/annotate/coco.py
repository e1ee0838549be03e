"""Ground-truth labels from COCO-format instance annotations (``instances_*.json``).

A record matches a COCO image by id when every record id of the manifest is a COCO
image id (as a string). Otherwise records match by file name: the last part of the
record's image path (or WebDataset member) equals the last part of ``file_name``.
Boxes are converted from COCO's ``[x, y, width, height]`` to ``[x1, y1, x2, y2]``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from dejavu.annotate.labelmap import apply_label_map, check_label_map, load_label_map
from dejavu.errors import InputError


@dataclass
class CocoAnnotations:
    """Instance annotations read from a COCO JSON file.

    Attributes
    ----------
    path : pathlib.Path
        The JSON file.
    categories : dict
        Category id (int) to name.
    file_names : dict
        Image id (str) to ``file_name``.
    instances : dict
        Image id (str) to a list of ``(category name, [x1, y1, x2, y2])``.
    """

    path: Path
    categories: dict[int, str]
    file_names: dict[str, str]
    instances: dict[str, list[tuple[str, list[float]]]]


def read_coco(path: str | os.PathLike) -> CocoAnnotations:
    """Read a COCO instances JSON file.

    Raises
    ------
    InputError
        If the file is missing or not valid JSON, lacks ``images``, ``annotations``
        or ``categories``, or an annotation names an unknown image or category.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as err:
        raise InputError(f"cannot read COCO file {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise InputError(f"COCO file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise InputError(f"COCO file {path} must hold a JSON object")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise InputError(
            f"COCO file {path} has no {', '.join(map(repr, missing))}; pass an "
            "instances_*.json file"
        )
    try:
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        file_names = {
            str(im["id"]): str(im.get("file_name", "")) for im in data["images"]
        }
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"COCO file {path}: a category or image entry lacks 'id' or 'name' ({err})"
        ) from err
    instances: dict[str, list[tuple[str, list[float]]]] = {k: [] for k in file_names}
    for number, ann in enumerate(data["annotations"], start=1):
        try:
            image_id = str(ann["image_id"])
            name = categories[int(ann["category_id"])]
            x, y, w, h = (float(v) for v in ann.get("bbox", (0, 0, 0, 0)))
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(
                f"COCO file {path}: annotation {number} (id {ann.get('id')!r}) has a "
                f"missing or unknown image_id, category_id or bbox ({err!r})"
            ) from err
        if image_id not in instances:
            raise InputError(
                f"COCO file {path}: annotation {number} (id {ann.get('id')!r}) names "
                f"image_id {image_id}, which is not in 'images'"
            )
        instances[image_id].append((name, [x, y, x + w, y + h]))
    return CocoAnnotations(path, categories, file_names, instances)


def _image_name(ref: str) -> str:
    return PurePosixPath(str(ref).rpartition("#")[2].replace("\\", "/")).name


def coco_frame_for_manifest(
    manifest, path: str | os.PathLike, *, label_map_path=None
) -> pd.DataFrame:
    """Return labels-file rows for every record of ``manifest`` from a COCO file.

    Parameters
    ----------
    manifest : dejavu.data.manifest.Manifest
    path : path-like
        The COCO instances JSON file.
    label_map_path : path-like, optional
        A label map from COCO category names to the data set's labels.

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``sha256``, ``labels``, ``box_labels``, ``boxes`` and
        ``scores`` (1.0 per box), in manifest order.

    Raises
    ------
    InputError
        If a record has no COCO image, a file name matches several COCO images, or
        the label map names unknown categories.
    """
    coco = read_coco(path)
    mapping = {}
    if label_map_path is not None:
        mapping = load_label_map(label_map_path)
        check_label_map(
            mapping,
            coco.categories.values(),
            source=f"COCO file {coco.path}",
            path=label_map_path,
        )
    ids = manifest.frame["id"].astype(str).tolist()
    if all(record_id in coco.file_names for record_id in ids):
        keys = ids
    else:
        by_name: dict[str, str] = {}
        repeated = set()
        for image_id, file_name in coco.file_names.items():
            name = _image_name(file_name)
            if name in by_name:
                repeated.add(name)
            by_name[name] = image_id
        keys = []
        for record_id, ref in zip(ids, manifest.frame["image"], strict=True):
            name = _image_name(ref)
            if name in repeated:
                raise InputError(
                    f"COCO file {coco.path}: several images have file name "
                    f"{name!r}, so record {record_id!r} of the {manifest.name} cannot "
                    "be matched; use COCO image ids as record ids"
                )
            if name not in by_name:
                raise InputError(
                    f"COCO file {coco.path} has no image with id {record_id!r} or "
                    f"file name {name!r} (record {record_id!r} of the {manifest.name} "
                    f"{manifest.path})"
                )
            keys.append(by_name[name])
    hashes = manifest.image_hashes or [""] * len(ids)
    rows = []
    for record_id, key, digest in zip(ids, keys, hashes, strict=True):
        instances = coco.instances[key]
        mapped = apply_label_map([name for name, _ in instances], mapping)
        kept = [(label, box) for label, (_, box) in zip(mapped, instances) if label]
        rows.append(
            {
                "id": record_id,
                "sha256": digest,
                "labels": sorted({label for label, _ in kept}),
                "box_labels": [label for label, _ in kept],
                "boxes": [box for _, box in kept],
                "scores": [1.0] * len(kept),
            }
        )
    return pd.DataFrame(
        rows, columns=["id", "sha256", "labels", "box_labels", "boxes", "scores"]
    )
