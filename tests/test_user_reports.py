"""Regression tests for problems found by trying the CLI as a new user.

Every case fails (or passes) before any model is trained, on tiny files made here.
"""

from __future__ import annotations

import os

import open_clip
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dejavu._io import STAMP_NAME, prepare_run_dir
from dejavu.cli import main
from dejavu.data.manifest import read_manifest
from dejavu.errors import InputError, OutputDirError
from dejavu.models import resolve_device


@pytest.fixture
def sets(tmp_path):
    """Target and public manifests of tiny images, and an untrained tiny ViT."""
    for i in range(5):
        Image.new("RGB", (16, 16), (40 * i, 20, 20)).save(tmp_path / f"im{i}.png")
    (tmp_path / "target.csv").write_text(
        "id,image,caption,objects\nt0,im0.png,a dog,dog\nt1,im1.png,a cat,cat\n",
        encoding="utf-8",
    )
    (tmp_path / "public.csv").write_text(
        "id,image,caption,objects\n"
        "p0,im2.png,a dog,dog\n"
        "p1,im3.png,a cat,cat\n"
        "p2,im4.png,a bus,bus\n",
        encoding="utf-8",
    )
    model = open_clip.create_model("dejavu-tiny-vit")
    torch.save({"state_dict": model.state_dict()}, tmp_path / "tiny.pt")
    return tmp_path


def _audit_args(root, target="target.csv", out="run"):
    model = str(root / "tiny.pt")
    return [
        "audit",
        "--target", model,
        "--reference", model,
        "--model", "dejavu-tiny-vit",
        "--target-set", str(root / target),
        "--public-set", str(root / "public.csv"),
        "--out", str(root / out),
        "--k", "1",
        "--bootstrap", "0",
        "--device", "cpu",
        "--quiet",
    ]  # fmt: skip


def test_resolve_device_unknown_name():
    with pytest.raises(InputError, match="'tpu' is invalid"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_resolve_device_cuda_missing():
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")


def test_prepare_run_dir_takes_stamp_only_folder(tmp_path):
    # A run that failed on its inputs leaves only the stamp behind.
    prepare_run_dir(tmp_path / "run", "audit", {"target_set": "wrong.csv"})
    path = prepare_run_dir(tmp_path / "run", "audit", {"target_set": "right.csv"})
    assert (path / STAMP_NAME).exists()


def test_prepare_run_dir_keeps_results_of_other_settings(tmp_path):
    path = prepare_run_dir(tmp_path / "run", "audit", {"k": [1]})
    (path / "summary.json").write_text("{}", encoding="utf-8")
    with pytest.raises(OutputDirError, match="different settings"):
        prepare_run_dir(tmp_path / "run", "audit", {"k": [5]})


def test_manifest_csv_with_byte_order_mark(sets):
    text = (sets / "target.csv").read_text(encoding="utf-8")
    (sets / "bom.csv").write_text(text, encoding="utf-8-sig")
    manifest = read_manifest(sets / "bom.csv")
    assert manifest.ids == ["t0", "t1"]


def test_manifest_jsonl_with_byte_order_mark(sets):
    (sets / "bom.jsonl").write_text(
        '{"id": "t0", "image": "im0.png", "caption": "a dog"}\n', encoding="utf-8-sig"
    )
    manifest = read_manifest(sets / "bom.jsonl")
    assert manifest.ids == ["t0"]


def test_audit_config_accepts_yaml_lists(sets):
    # The config lacks --target, so a valid list gets as far as that check.
    (sets / "config.yaml").write_text("audit:\n  k: [1, 5]\n  top_l: [0.1, 0.5]\n")
    result = CliRunner().invoke(main, ["audit", "--config", str(sets / "config.yaml")])
    assert "missing option --target" in result.output


def test_audit_config_bad_list_names_key(sets):
    (sets / "config.yaml").write_text("audit:\n  k: [1, 0]\n")
    result = CliRunner().invoke(main, ["audit", "--config", str(sets / "config.yaml")])
    assert "'k' in config" in result.output


def test_audit_target_set_without_objects(sets):
    (sets / "empty.csv").write_text(
        "id,image,caption,objects\nt0,im0.png,a dog,\nt1,im1.png,a cat,[]\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, _audit_args(sets, target="empty.csv"))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "no record of the target set" in result.output


def test_audit_device_cuda_missing_is_clean(sets):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    args = [*_audit_args(sets), "--device", "cuda"]
    result = CliRunner().invoke(main, args)
    assert "CUDA is not available" in result.output


@pytest.mark.parametrize("folder_name", ["report.html", "comparison.html"])
def test_report_html_path_trailing_separator(tmp_path, folder_name):
    from dejavu.report.write import _html_path

    out = f"{tmp_path / 'share'}{os.sep}"
    path = _html_path(out, default=None, folder_name=folder_name)
    assert path == tmp_path / "share" / folder_name
