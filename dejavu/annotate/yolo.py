"""The ultralytics YOLO detector backend, and training a YOLO on the scene data.

ultralytics is imported only inside this module's functions, never at import time,
because importing it replaces ``PIL.Image.open`` for the whole process and, unless
configured otherwise, probes the network. :func:`import_ultralytics` first points
``YOLO_CONFIG_DIR`` at a writable folder that contains the font ultralytics would
otherwise download, and for local weights sets ``YOLO_OFFLINE=1`` and
``YOLO_AUTOINSTALL=0`` so that nothing is fetched or installed. After the import it
puts Pillow's own ``Image.open`` back.

Loading ``.pt`` weights unpickles them fully (ultralytics does not use
``weights_only``): load only weights you trust.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dejavu._io import sha256_file
from dejavu.errors import InputError, ModelLoadError

logger = logging.getLogger(__name__)

FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")

#: Name that selects the detector shipped with dejavu, trained on the scene data.
SCENE_DETECTOR_NAME = "scenes"
SCENE_DETECTOR = (
    Path(__file__).resolve().parents[1] / "assets" / "detector" / ("scenes-yolo11n.pt")
)


@dataclass
class Detections:
    """Detector output for one image.

    Attributes
    ----------
    classes : list of str
        Class name of each box, as the detector names it.
    boxes : numpy.ndarray, shape (n_boxes, 4), float32
        Boxes as ``[x1, y1, x2, y2]`` in pixels of the original image.
    scores : numpy.ndarray, shape (n_boxes,), float32
        Confidence of each box, in [0, 1].
    """

    classes: list[str]
    boxes: np.ndarray
    scores: np.ndarray


def config_dir() -> Path:
    """Return the folder used as ``YOLO_CONFIG_DIR`` when the user set none.

    It is ``$XDG_CACHE_HOME/dejavu/ultralytics`` (``~/.cache/...`` by default), or a
    folder under the system temporary directory when that is not writable.
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    candidate = base / "dejavu" / "ultralytics"
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=candidate)
        probe.close()
        return candidate
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"dejavu-ultralytics-{os.getuid()}"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _place_fonts(folder: Path) -> None:
    # ultralytics looks for Arial in $YOLO_CONFIG_DIR/Ultralytics and downloads it
    # when missing (dataset checks, plots). Any TTF serves, so copy matplotlib's
    # DejaVu Sans, which ships with a package dejavu already depends on.
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    target_dir = folder / "Ultralytics"
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in FONT_NAMES:
        target = target_dir / name
        if not target.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(source, target)


def import_ultralytics(*, offline: bool = True):
    """Import and return the ``ultralytics`` module, prepared to run without network.

    Parameters
    ----------
    offline : bool, default=True
        Set ``YOLO_OFFLINE=1`` and ``YOLO_AUTOINSTALL=0`` unless the environment
        already sets them. Use ``False`` only to let ultralytics download a
        published weights name. The switches take effect at the first import in a
        process; a later call cannot undo them.

    Raises
    ------
    ModelLoadError
        If ultralytics is not installed.
    """
    if offline:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    if not os.environ.get("YOLO_CONFIG_DIR"):
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir())
    _place_fonts(Path(os.environ["YOLO_CONFIG_DIR"]))
    # ultralytics (8.4) sets NumPy's and torch's print options for the whole process
    # when imported; keep the caller's.
    import numpy as np
    import torch

    numpy_print = np.get_printoptions()
    torch_print = torch._tensor_str.PRINT_OPTS.__dict__.copy()
    try:
        import ultralytics
    except ImportError as err:
        raise ModelLoadError(
            "the YOLO detector needs the ultralytics package, which is not installed; "
            "install it with `pip install 'dejavu-audit[detect]'`"
        ) from err
    if offline:
        # Analytics are sent when ultralytics thinks it is online; a process that
        # imported ultralytics earlier may have decided that already.
        from ultralytics.utils import events

        events.events.enabled = False
    _restore_pil_open()
    np.set_printoptions(**numpy_print)
    torch._tensor_str.PRINT_OPTS.__dict__.update(torch_print)
    return ultralytics


def _restore_pil_open() -> None:
    # ultralytics (8.4) replaces PIL.Image.open with a wrapper that, on a file Pillow
    # cannot identify, tries to install and load a HEIF plugin. That turns the
    # UnidentifiedImageError that bad-record handling relies on into a
    # ModuleNotFoundError (or a pip install when online), so put Pillow's own back.
    from PIL import Image

    try:
        from ultralytics.utils import patches
    except ImportError:
        return
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def _is_offline() -> bool:
    return os.environ.get("YOLO_OFFLINE", "").lower() in {"1", "true", "yes"}


def locate_weights(weights: str | os.PathLike) -> tuple[str, bool]:
    """Decide whether ``weights`` is a local file or a published name.

    Returns
    -------
    (str, bool)
        The weights as ultralytics should receive them, and whether a download is
        allowed.

    Raises
    ------
    ModelLoadError
        If a local file is missing, or a published name is not on disk while
        offline. The message names where to put the file.
    """
    text = str(weights)
    if text == SCENE_DETECTOR_NAME:
        if not SCENE_DETECTOR.is_file():
            raise ModelLoadError(
                f"the scene detector {SCENE_DETECTOR} is missing from this "
                "installation; reinstall dejavu or pass the path of a weights file"
            )
        return str(SCENE_DETECTOR), False
    path = Path(text).expanduser()
    if path.is_file():
        return str(path), False
    if path.exists():
        raise ModelLoadError(f"detector weights {path} is a folder, not a file")
    is_bare_name = path.name == text and path.suffix == ".pt"
    if is_bare_name:
        ultralytics = import_ultralytics(offline=_is_offline())
        from ultralytics.utils import SETTINGS
        from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

        del ultralytics
        cached = Path(SETTINGS["weights_dir"]) / text
        if cached.is_file():
            return str(cached), False
        if text in GITHUB_ASSETS_NAMES:
            if not _is_offline():
                return text, True
            raise ModelLoadError(
                f"detector weights {text!r} are not on disk and YOLO_OFFLINE is set, "
                f"so they cannot be downloaded; put the file at {Path.cwd() / text} "
                f"or {cached}, or pass the path of a weights file with --detector"
            )
    raise ModelLoadError(
        f"detector weights {path} not found; put the weights file there, or pass "
        "the path of an ultralytics .pt file (published names such as yolo11n.pt "
        "are downloaded only when the machine is online)"
    )


def load_yolo(weights: str | os.PathLike):
    """Load an ultralytics model from a local file or a published name.

    Returns
    -------
    (ultralytics.YOLO, str or None)
        The model, and the SHA-256 of the weights file (None for a published name
        that ultralytics fetched to a location it chose).

    Raises
    ------
    ModelLoadError
        If the file is missing, truncated, or not an ultralytics checkpoint.
    """
    source, download = locate_weights(weights)
    ultralytics = import_ultralytics(offline=not download)
    try:
        model = ultralytics.YOLO(source, task="detect")
    # Unpickling an arbitrary file can fail with almost any exception type
    # (UnpicklingError, EOFError, RuntimeError, KeyError, AttributeError, ...).
    except Exception as err:
        if download:
            raise ModelLoadError(
                f"cannot download detector weights {source} ({type(err).__name__}: "
                f"{err}); the machine may be offline: put the file at "
                f"{Path.cwd() / source} or pass the path of a weights file"
            ) from err
        raise ModelLoadError(
            f"cannot load detector weights {source}: {type(err).__name__}: {err}; "
            "the file may be truncated or not an ultralytics YOLO checkpoint"
        ) from err
    digest = None
    path = Path(getattr(model, "ckpt_path", None) or source)
    if path.is_file():
        digest = sha256_file(path)
    return model, digest


class YoloDetector:
    """Detect objects with an ultralytics YOLO model.

    Parameters
    ----------
    weights : path-like or str
        A local weights file, ``"scenes"`` for the detector shipped for the scene
        data, or a published name such as ``"yolo11n.pt"`` that ultralytics
        downloads when online. Open-vocabulary weights (YOLO-World, YOLOE) need
        ``classes``.
    conf : float, default=0.25
        Minimum box confidence, in [0, 1].
    imgsz : int, optional
        Inference size in pixels. Default: the size the weights were trained at,
        else 640.
    batch_size : int, default=16
        Images per forward pass.
    device : str, optional
        ``"cpu"``, ``"0"``, ``"cuda:0"`` and so on. Default: ultralytics' choice
        (the first GPU when there is one).
    classes : sequence of str, optional
        Class names to keep. For a closed-vocabulary model they must be among its
        classes; for an open-vocabulary model they set its vocabulary.

    Raises
    ------
    ModelLoadError
        If the weights cannot be loaded.
    InputError
        If an option value is invalid or ``classes`` names a class the model lacks.
    """

    def __init__(
        self,
        weights: str | os.PathLike,
        *,
        conf: float = 0.25,
        imgsz: int | None = None,
        batch_size: int = 16,
        device: str | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        if not 0.0 <= float(conf) <= 1.0:
            raise InputError(f"detector confidence must be in [0, 1], got {conf}")
        if imgsz is not None and int(imgsz) < 32:
            raise InputError(f"detector image size must be at least 32, got {imgsz}")
        if int(batch_size) < 1:
            raise InputError(
                f"detector batch size must be at least 1, got {batch_size}"
            )
        self.model, self.weights_sha256 = load_yolo(weights)
        self.weights = str(weights)
        self.conf = float(conf)
        self.batch_size = int(batch_size)
        self.device = device
        trained_size = self.model.overrides.get("imgsz", 640)
        if isinstance(trained_size, list | tuple):
            trained_size = max(trained_size)
        self.imgsz = int(imgsz) if imgsz is not None else int(trained_size)
        self.open_vocabulary = hasattr(self.model, "set_classes")
        self.classes = list(classes) if classes else None
        self._class_ids = None
        if self.classes and self.open_vocabulary:
            # NOTE: this computes text embeddings with a text model that ultralytics
            # downloads on first use; it was not run on a machine without internet.
            self.model.set_classes(self.classes)
        elif self.classes:
            index = {name: i for i, name in self.names.items()}
            unknown = [name for name in self.classes if name not in index]
            if unknown:
                raise InputError(
                    f"--classes names {', '.join(map(repr, unknown))}, which detector "
                    f"{self.weights} does not have; its classes are: "
                    f"{', '.join(sorted(index))}"
                )
            self._class_ids = [index[name] for name in self.classes]

    @property
    def names(self) -> dict[int, str]:
        """Class id to class name, as the model defines them."""
        names = self.model.names
        if isinstance(names, dict):
            return {int(k): str(v) for k, v in names.items()}
        return dict(enumerate(map(str, names)))

    @property
    def vocabulary(self) -> list[str]:
        """Class names the detector can return with the current ``classes``."""
        if self.classes:
            return sorted(set(self.classes))
        return sorted(set(self.names.values()))

    def settings(self) -> dict[str, Any]:
        """Settings that determine the detections, for cache keys and metadata."""
        return {
            "backend": "ultralytics",
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "conf": self.conf,
            "imgsz": self.imgsz,
            "classes": self.classes,
        }

    def detect(self, images: Sequence) -> list[Detections]:
        """Detect objects in a list of RGB PIL images.

        Returns one :class:`Detections` per image, in order.
        """
        results = []
        for start in range(0, len(images), self.batch_size):
            batch = list(images[start : start + self.batch_size])
            outputs = self.model.predict(
                batch,
                conf=self.conf,
                imgsz=self.imgsz,
                device=self.device,
                classes=self._class_ids,
                batch=len(batch),
                verbose=False,
                save=False,
            )
            results.extend(self._convert(out) for out in outputs)
        return results

    def _convert(self, output) -> Detections:
        names = output.names
        boxes = output.boxes
        if boxes is None or len(boxes) == 0:
            return Detections([], np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        class_ids = boxes.cls.cpu().numpy().astype(int)
        return Detections(
            classes=[str(names[int(c)]) for c in class_ids],
            boxes=boxes.xyxy.cpu().numpy().astype(np.float32),
            scores=boxes.conf.cpu().numpy().astype(np.float32),
        )


def ultralytics_version() -> str | None:
    """Return the installed ultralytics version without importing it."""
    from importlib import metadata

    try:
        return metadata.version("ultralytics")
    except metadata.PackageNotFoundError:
        return None


def train_detector(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str = "yolo11n.yaml",
    epochs: int = 40,
    imgsz: int = 64,
    batch_size: int = 32,
    device: str | None = None,
    seed: int = 0,
    workers: int = 0,
    optimizer: str = "SGD",
    lr0: float = 0.01,
    patience: int = 100,
    mosaic: float = 0.0,
    cache_images: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a YOLO detector with ultralytics' own trainer and validate it.

    Parameters
    ----------
    data : path-like
        A YOLO data set: its ``data.yaml``, or the folder that contains it (with
        ``train`` and ``val`` parts).
    out : path-like
        Output folder. ultralytics writes its run under ``out/train``; the best
        weights are copied to ``out/best.pt``.
    model : str, default="yolo11n.yaml"
        A model YAML (trained from scratch) or ``.pt`` weights (fine-tuned).
    epochs, imgsz, batch_size, seed, workers, optimizer, lr0, patience
        Passed to ultralytics' trainer (``batch`` is ``batch_size``). On CPU,
        ``optimizer="SGD"`` with ``lr0=0.01`` learns the scene data much faster
        than ultralytics' default ``"auto"``.
    device : str, optional
        ``"cpu"``, ``"0"`` and so on; default: ultralytics' choice.
    mosaic : float, default=0.0
        Probability of ultralytics' mosaic augmentation (its own default is 1.0),
        which tiles four images into one and so halves object sizes.
    cache_images : bool, default=False
        Keep decoded training images in memory.
    extra : dict, optional
        Further ultralytics training arguments.

    Returns
    -------
    dict
        ``weights`` (path of ``best.pt``), ``map50``, ``map50_95`` (box mAP on the
        val part, in [0, 1]), ``per_class`` (class name to its mAP50 and
        mAP50-95) and ``epochs``.

    Raises
    ------
    InputError
        If the data set has no ``data.yaml``.
    """
    data = Path(data)
    data_yaml = data / "data.yaml" if data.is_dir() else data
    if not data_yaml.is_file():
        raise InputError(
            f"YOLO data set {data} has no data.yaml; pass the yolo folder written "
            "by the scene generator or its data.yaml"
        )
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ultralytics = import_ultralytics(offline=True)
    if str(model).endswith((".yaml", ".yml")):
        yolo = ultralytics.YOLO(model, task="detect")
    else:
        yolo, _ = load_yolo(model)
    args = {
        "data": str(data_yaml.resolve()),
        "epochs": int(epochs),
        "imgsz": int(imgsz),
        "batch": int(batch_size),
        "seed": int(seed),
        "deterministic": True,
        "workers": int(workers),
        "optimizer": optimizer,
        "lr0": float(lr0),
        "patience": int(patience),
        "mosaic": float(mosaic),
        "cache": "ram" if cache_images else False,
        "project": str(out),
        "name": "train",
        "exist_ok": True,
        "plots": False,
        "amp": False,
        "verbose": False,
        **({"device": device} if device is not None else {}),
        **(extra or {}),
    }
    yolo.train(**args)
    best = out / "train" / "weights" / "best.pt"
    if not best.is_file():
        best = out / "train" / "weights" / "last.pt"
    shutil.copyfile(best, out / "best.pt")
    metrics = evaluate_detector(out / "best.pt", data_yaml, imgsz=imgsz, device=device)
    return {"weights": str(out / "best.pt"), "epochs": int(epochs), **metrics}


def evaluate_detector(
    weights: str | os.PathLike,
    data: str | os.PathLike,
    *,
    imgsz: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
    split: str = "val",
) -> dict[str, Any]:
    """Return box mAP of a detector on a YOLO data set's ``split`` part.

    Returns
    -------
    dict
        ``map50`` and ``map50_95`` (floats in [0, 1]) and ``per_class``
        (class name to ``{"map50", "map50_95"}``).
    """
    data = Path(data)
    data_yaml = data / "data.yaml" if data.is_dir() else data
    yolo, _ = load_yolo(weights)
    kwargs = {"imgsz": int(imgsz)} if imgsz else {}
    if device is not None:
        kwargs["device"] = device
    # ultralytics writes a run folder even without plots; keep it out of the way.
    with tempfile.TemporaryDirectory(prefix="dejavu-val-") as project:
        result = yolo.val(
            data=str(data_yaml.resolve()),
            split=split,
            batch=int(batch_size),
            plots=False,
            verbose=False,
            workers=0,
            project=project,
            name="val",
            **kwargs,
        )
    names = result.names
    per_class = {}
    for i, class_id in enumerate(result.box.ap_class_index):
        per_class[str(names[int(class_id)])] = {
            "map50": float(result.box.ap50[i]),
            "map50_95": float(result.box.ap[i]),
        }
    return {
        "map50": float(result.box.map50),
        "map50_95": float(result.box.map),
        "per_class": per_class,
    }
