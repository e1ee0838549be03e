"""The default run: the whole chain on generated scenes, from data to report.

:func:`run_demo` generates scene data and trains a target CLIP on the target split
and a reference CLIP on a disjoint split of the same size. It then labels the images
with the shipped scene detector, audits the pair with a control set, and writes the
report.
Settings come from a YAML file with one section per stage (the packaged
``demo.yaml`` by default, copied to ``configs/demo.yaml`` for editing).

Each stage records its settings when it finishes (:class:`dejavu._io.StageRecords`)
and is skipped on a rerun whose settings match, so a second run only checks those
records. A stage interrupted half way resumes from its own cache or checkpoints.
"""

from __future__ import annotations

import copy
import logging
import os
from importlib import resources
from pathlib import Path

import yaml

from dejavu._io import StageRecords, prepare_run_dir
from dejavu.config import PATH_OPTIONS, resolve_path
from dejavu.errors import InputError

log = logging.getLogger(__name__)

STAGES = ("scenes", "train", "annotate", "audit", "report")


def default_config_path() -> Path:
    """Return the path of the packaged ``demo.yaml``."""
    return Path(str(resources.files("dejavu") / "configs" / "demo.yaml"))


def load_demo_config(path: str | os.PathLike | None = None) -> dict:
    """Read a demo config and check that it has a section for every stage.

    Parameters
    ----------
    path : path-like, optional
        A YAML file; the packaged ``demo.yaml`` when omitted.

    Returns
    -------
    dict
        The parsed config.

    Raises
    ------
    InputError
        If the file cannot be read or a stage section is missing.
    """
    path = Path(path) if path else default_config_path()
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise InputError(f"cannot read demo config {path}: {err}") from err
    missing = [stage for stage in STAGES if not isinstance(config.get(stage), dict)]
    if missing:
        raise InputError(
            f"demo config {path} has no section {', '.join(missing)}; start from "
            f"{default_config_path()}"
        )
    return config


def run_demo(
    out: str | os.PathLike,
    *,
    config_path: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Run the whole chain and return the path of ``report.html``.

    Parameters
    ----------
    out : path-like
        Folder of the run: ``scenes/``, ``target/``, ``reference/``, ``labels/``
        and ``audit/`` (the audit run folder, with ``report.html``).
    config_path : path-like, optional
        Demo config; the packaged ``demo.yaml`` when omitted.
    overwrite : bool, default=False
        Replace a folder written with other settings.
    progress : bool, default=True
        Show progress bars.

    Returns
    -------
    pathlib.Path
        The report.
    """
    config = load_demo_config(config_path)
    out = prepare_run_dir(out, "demo", config, overwrite=overwrite)
    stages = StageRecords(out)

    scenes = config["scenes"]
    stages.run("scenes", scenes, lambda: _make_scenes(out, scenes, progress))

    train = config["train"]
    stages.run("train", train, lambda: _train(out, train))

    annotate = config["annotate"]
    stages.run("annotate", annotate, lambda: _annotate(out, annotate, progress))

    audit = _audit_settings(out, config["audit"])
    run_dir = Path(audit["out"])
    stages.run(
        "audit",
        audit,
        lambda: _audit(audit, progress),
        outputs=[run_dir / "summary.json", run_dir / "records.parquet"],
    )

    report = config["report"]
    stages.run(
        "report",
        report,
        lambda: _report(run_dir, report),
        outputs=[run_dir / "report.html"],
    )
    return run_dir / "report.html"


def _make_scenes(out: Path, settings: dict, progress: bool) -> None:
    from dejavu.data.scenes import write_scenes

    write_scenes(
        out / "scenes",
        **settings,
        formats=("manifest",),
        overwrite=True,
        progress=progress,
    )


def _train(out: Path, settings: dict) -> None:
    from dejavu.train import train_clips

    # Target and reference train at once, one CPU thread each; a rerun with the
    # same settings resumes each from its last checkpoint.
    runs = [
        {"data": out / "scenes" / f"{role}.parquet", "out": out / role, **settings}
        for role in ("target", "reference")
    ]
    train_clips(runs, jobs=2)


def _annotate(out: Path, settings: dict, progress: bool) -> None:
    from dejavu.annotate import annotate
    from dejavu.data.manifest import read_manifest

    settings = dict(settings)
    # "scenes" names the detector shipped for scene data.
    detector = settings.pop("detector", "scenes")
    if detector is None:
        log.info("annotate: no detector set; the audit uses ground-truth objects")
        return
    for split, name in (
        ("target", "target set"),
        ("control", "control set"),
        ("public", "public set"),
    ):
        manifest = read_manifest(
            out / "scenes" / f"{split}.parquet", set_name=name, check_images=False
        )
        annotate(
            manifest,
            out / "labels" / f"{split}.parquet",
            detector=detector,
            options=settings,
            cache_dir=out / "labels" / "cache",
            progress=progress,
        )


def _audit_settings(out: Path, section: dict) -> dict:
    """Resolve the audit section's paths against the demo folder."""
    settings = copy.deepcopy(section)
    for key, value in settings.items():
        if key in PATH_OPTIONS:
            settings[key] = resolve_path(value, out)
    settings.setdefault("out", str(out / "audit"))
    return settings


def _audit(settings: dict, progress: bool) -> None:
    from dejavu.audit import AuditConfig, run_audit

    labels = [settings.get(f"{s}_labels") for s in ("target", "control", "public")]
    if any(path and not Path(path).exists() for path in labels):
        # The annotate stage was configured off: score against ground truth.
        settings = {
            key: value for key, value in settings.items() if not key.endswith("_labels")
        }
    run_audit(AuditConfig(**settings, progress=progress, write_report=False))


def _report(run_dir: Path, settings: dict) -> None:
    from dejavu.report import write_report

    write_report(run_dir, **settings)
