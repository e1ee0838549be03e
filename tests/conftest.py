"""Shared test setup: offline switches and the scene fixture of trained models.

The session fixture :func:`scene_models` generates a small scene data set and trains
one target and one reference tiny ViT CLIP on disjoint splits: the members case of
the validity check (:mod:`dejavu.validate`) at small settings. It is built once per
test session (a few minutes on 2 CPU cores) and reused by every end-to-end test.
Set ``DEJAVU_FIXTURE_DIR`` to a folder to keep it between sessions while developing.
A folder built with other settings, or containing anything else, is an error: delete it
or pick another.
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


def fixture_settings():
    """Return the validity-check settings that the shared fixture is built with.

    Sizes chosen so that the member signal is clear (PRG interval above 0 at k=10)
    and the control-set gaps stay small, while the fixture builds in a few minutes.
    """
    from dejavu.validate import ValidationSettings

    return ValidationSettings(
        n_records=400, n_public=3000, epochs=40, bootstrap=500, device="cpu"
    )


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
    """Build the members case of the validity check in `root`.

    The target trains on the target split and the reference on the reference
    split, both at once with one CPU thread each. The validity-check test later
    trains the remaining models in the same folder.
    """
    from dejavu.validate import prepare_models

    checkpoints = prepare_models(
        root,
        fixture_settings(),
        names=("target", "reference"),
        progress=False,
    )
    scenes = root / "scenes"
    return SceneModels(
        root=root,
        target_set=scenes / "target.parquet",
        reference_set=scenes / "reference.parquet",
        control_set=scenes / "control.parquet",
        public_set=scenes / "public.parquet",
        target=checkpoints["target"],
        reference=checkpoints["reference"],
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
def scene_validation(scene_models):
    """The validity check at the fixture's settings, with its checks by case.

    It reuses the fixture's scenes and its target/reference pair, and trains the
    non-member target, the text-randomization pair and the canary target in the
    same folder.
    """
    from dejavu.validate import run_validation

    checks = run_validation(scene_models.root, fixture_settings(), progress=False)
    by_case = {}
    for check in checks:
        by_case.setdefault(check.case, []).append(check)
    return by_case


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
