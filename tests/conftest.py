"""Shared test setup: offline switches and the scene fixture of trained models.

The session fixture :func:`scene_models` generates a small scene data set and trains
one target and one reference tiny ViT CLIP on disjoint splits. It is built once per
test session (a few minutes on 2 CPU cores) and reused by every end-to-end test.
Set ``DEJAVU_FIXTURE_DIR`` to a folder to keep it between sessions while developing;
stages finished with other settings are rebuilt.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

# The tests must never reach a hub; these switches must be set before the libraries
# that read them are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")

import pytest  # noqa: E402

# Sizes chosen so that the member signal is clear (PRG interval above 0 at k=10) and
# the control-set gaps stay small, while the whole fixture builds in a few minutes.
FIXTURE_SETTINGS = {
    "n_target": 400,
    "n_reference": 400,
    "n_control": 400,
    "n_public": 3000,
    "seed": 0,
    "size": 64,
    "model": "dejavu-tiny-vit",
    "epochs": 40,
    "batch_size": 64,
}


@dataclass(frozen=True)
class SceneModels:
    """Paths of the shared scene data and the trained target/reference pair."""

    root: Path
    target_set: Path
    reference_set: Path
    control_set: Path
    public_set: Path
    target: Path
    reference: Path
    audit_dir: Path


def _build_scene_models(root: Path) -> SceneModels:
    from dejavu._io import StageRecords
    from dejavu.data.scenes import write_scenes
    from dejavu.train import train_clips

    s = FIXTURE_SETTINGS
    stages = StageRecords(root)

    def scenes():
        write_scenes(
            root / "scenes",
            n_target=s["n_target"],
            n_reference=s["n_reference"],
            n_control=s["n_control"],
            n_public=s["n_public"],
            seed=s["seed"],
            size=s["size"],
            formats=("manifest",),
            overwrite=True,
            progress=False,
        )

    stages.run("scenes", s, scenes)
    # Both models train at once, one CPU thread each; an interrupted run resumes
    # from its last checkpoint.
    runs = [
        {
            "data": root / "scenes" / f"{name}.parquet",
            "out": root / name,
            "model": s["model"],
            "epochs": s["epochs"],
            "batch_size": s["batch_size"],
            "seed": s["seed"],
            "device": "cpu",
        }
        for name in ("target", "reference")
    ]
    stages.run("train", s, lambda: train_clips(runs, jobs=2))
    return _scene_models_at(root)


def _scene_models_at(root: Path) -> SceneModels:
    scenes = root / "scenes"
    epochs = FIXTURE_SETTINGS["epochs"]
    return SceneModels(
        root=root,
        target_set=scenes / "target.parquet",
        reference_set=scenes / "reference.parquet",
        control_set=scenes / "control.parquet",
        public_set=scenes / "public.parquet",
        target=root / "target" / "checkpoints" / f"epoch_{epochs}.pt",
        reference=root / "reference" / "checkpoints" / f"epoch_{epochs}.pt",
        audit_dir=root / "audit",
    )


@pytest.fixture(scope="session")
def scene_models(tmp_path_factory) -> SceneModels:
    """Scene data and a trained target/reference pair, built once per session."""
    keep = os.environ.get("DEJAVU_FIXTURE_DIR")
    root = Path(keep) if keep else tmp_path_factory.mktemp("scene-models")
    root.mkdir(parents=True, exist_ok=True)
    return _build_scene_models(root)


@pytest.fixture(scope="session")
def scene_audit(scene_models, tmp_path_factory) -> Path:
    """A two-model audit run on the shared fixture, with a control set."""
    from dejavu.audit import AuditConfig, run_audit

    out = tmp_path_factory.mktemp("scene-audit") / "run"
    config = AuditConfig(
        target=str(scene_models.target),
        reference=str(scene_models.reference),
        target_set=str(scene_models.target_set),
        control_set=str(scene_models.control_set),
        public_set=str(scene_models.public_set),
        out=str(out),
        k=[1, 5, 10],
        bootstrap=500,
        progress=False,
    )
    return run_audit(config)


@pytest.fixture
def no_network(monkeypatch):
    """Make any attempt to open a network connection fail loudly."""

    def reject_connection(*args, **kwargs):
        raise OSError("network access attempted during a test that must be offline")

    monkeypatch.setattr(socket.socket, "connect", reject_connection)
    monkeypatch.setattr(socket.socket, "connect_ex", reject_connection)
    monkeypatch.setattr(socket, "create_connection", reject_connection)
    monkeypatch.setattr(socket, "getaddrinfo", reject_connection)
