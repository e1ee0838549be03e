"""`dejavu demo` runs the whole chain, and a rerun skips every finished stage.

The real demo trains for minutes; these tests run the same code on a config with tiny
sizes. The shipped detector labels the images, as in the default run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dejavu.cli import main
from dejavu.demo import default_config_path, load_demo_config
from dejavu.errors import InputError


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    config = load_demo_config()
    config["scenes"].update(n_target=40, n_reference=40, n_control=40, n_public=200)
    config["train"].update(epochs=2, batch_size=16, device="cpu")
    config["audit"].update(
        target="target/checkpoints/epoch_2.pt",
        reference="reference/checkpoints/epoch_2.pt",
        bootstrap=50,
    )
    path = tmp_path_factory.mktemp("demo-config") / "demo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def demo_run(tiny_config, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("demo") / "run"
    result = CliRunner().invoke(
        main, ["demo", "--out", str(out), "--config", str(tiny_config), "--quiet"]
    )
    return out, result


def test_demo_exits_cleanly(demo_run):
    _, result = demo_run
    assert result.exit_code == 0, result.output


def test_demo_writes_report(demo_run):
    out, _ = demo_run
    assert (out / "audit" / "report.html").is_file()


def test_demo_prints_report_path(demo_run):
    out, result = demo_run
    assert str(out / "audit" / "report.html") in result.output


def test_demo_labels_with_detector(demo_run):
    out, _ = demo_run
    assert (out / "labels" / "public.parquet").is_file()


def test_demo_audit_used_detector_labels(demo_run):
    out, _ = demo_run
    summary = json.loads((out / "audit" / "summary.json").read_text())
    assert summary["settings"]["public_labels"] == str(
        out / "labels" / "public.parquet"
    )


def test_demo_rerun_skips_finished_stages(demo_run, tiny_config):
    out, _ = demo_run
    records = sorted((out / ".stages").glob("*.json"))
    before = {p.name: p.stat().st_mtime_ns for p in records}
    checkpoint = out / "target" / "checkpoints" / "epoch_2.pt"
    checkpoint_time = checkpoint.stat().st_mtime_ns
    result = CliRunner().invoke(
        main, ["demo", "--out", str(out), "--config", str(tiny_config), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    after = {p.name: p.stat().st_mtime_ns for p in records}
    assert after == before
    assert checkpoint.stat().st_mtime_ns == checkpoint_time


def test_demo_rewrites_deleted_report(demo_run, tiny_config):
    out, _ = demo_run
    report = out / "audit" / "report.html"
    report.unlink()
    result = CliRunner().invoke(
        main, ["demo", "--out", str(out), "--config", str(tiny_config), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert report.is_file()


def test_demo_audit_section_reproduces_audit(demo_run, tiny_config):
    out, _ = demo_run
    before = json.loads((out / "audit" / "summary.json").read_text())
    result = CliRunner().invoke(
        main, ["audit", "--config", str(tiny_config), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    after = json.loads((out / "audit" / "summary.json").read_text())
    assert after["results"] == before["results"]


def test_demo_config_copy_matches_package():
    shipped = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    assert shipped.read_text() == default_config_path().read_text()


def test_demo_config_missing_section(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("scenes: {}\n", encoding="utf-8")
    with pytest.raises(InputError, match="no section train, annotate, audit, report"):
        load_demo_config(path)
