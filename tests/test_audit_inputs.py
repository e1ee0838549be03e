"""`dejavu audit` rejects bad input with a message naming the problem and the fix.

These cases fail before any model is trained, so they use small hand-made manifests
and, where a model must load, a tiny untrained checkpoint.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dejavu.cli import main


@pytest.fixture
def sets(tmp_path):
    """Target, public and a tiny open_clip checkpoint, all valid."""
    for i in range(6):
        Image.new("RGB", (16, 16), (40 * i, 20, 20)).save(tmp_path / f"im{i}.png")
    (tmp_path / "target.csv").write_text(
        "id,image,caption,objects\nt0,im0.png,a dog,dog|cat\nt1,im1.png,a cat,cat\n",
        encoding="utf-8",
    )
    (tmp_path / "public.csv").write_text(
        "id,image,caption,objects\n"
        "p0,im2.png,a dog,dog\n"
        "p1,im3.png,a cat,cat\n"
        "p2,im4.png,a bus,bus\n",
        encoding="utf-8",
    )
    return tmp_path


def _audit(tmp_path, *extra, target="target.csv", public="public.csv", model=None):
    model = model or str(tmp_path / "nothing.pt")
    args = [
        "audit",
        "--target", model,
        "--reference", model,
        "--target-set", str(tmp_path / target),
        "--public-set", str(tmp_path / public),
        "--out", str(tmp_path / "run"),
        "--quiet",
        *extra,
    ]  # fmt: skip
    return CliRunner().invoke(main, args)


def _assert_clean_failure(result, *fragments):
    assert result.exit_code == 1, result.output
    # A clean failure is click's own exit, not an exception escaping the command.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.output


def test_audit_missing_manifest(sets):
    result = _audit(sets, target="nope.csv")
    _assert_clean_failure(result, "nope.csv does not exist")


def test_audit_missing_caption_column(sets):
    (sets / "nocap.csv").write_text("id,image,objects\nt0,im0.png,dog\n")
    result = _audit(sets, target="nocap.csv")
    _assert_clean_failure(result, "no column 'caption'", "nocap.csv")


def test_audit_duplicate_ids_across_sets(sets):
    (sets / "dup.csv").write_text("id,image,caption,objects\np0,im0.png,a dog,dog\n")
    result = _audit(sets, target="dup.csv")
    _assert_clean_failure(result, "id 'p0' is in both the target set and the public")


def test_audit_empty_caption(sets):
    (sets / "empty.csv").write_text("id,image,caption,objects\nt0,im0.png,,dog\n")
    result = _audit(sets, target="empty.csv")
    _assert_clean_failure(result, "row 1 (id 't0'): the caption is empty")


def test_audit_truncated_image(sets):
    data = (sets / "im0.png").read_bytes()
    (sets / "cut.png").write_bytes(data[:20])
    (sets / "cut.csv").write_text("id,image,caption,objects\nt0,cut.png,a dog,dog\n")
    result = _audit(sets, target="cut.csv")
    _assert_clean_failure(result, "row 1 (id 't0')", "--skip-bad-records")


def test_audit_target_image_in_public_set(sets):
    (sets / "leak.csv").write_text("id,image,caption,objects\nt0,im2.png,a dog,dog\n")
    result = _audit(sets, target="leak.csv")
    _assert_clean_failure(result, "record 't0' has the same image bytes", "'p0'")


def test_audit_k_larger_than_public_set(sets):
    result = _audit(sets, "--k", "1,5")
    _assert_clean_failure(result, "k = 5 is larger than the public set (3 records")


def test_audit_file_that_is_not_a_checkpoint(sets):
    junk = sets / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    result = _audit(sets, "--k", "1", model=str(junk))
    _assert_clean_failure(result, "junk.pt")


class _Payload:
    pass


def test_audit_pickle_refused_by_weights_only(sets):
    evil = sets / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": _Payload()}, f)
    result = _audit(sets, "--k", "1", model=str(evil))
    _assert_clean_failure(result, "evil.pt")


def test_audit_architecture_mismatch(sets):
    import open_clip

    import dejavu.models  # noqa: F401  registers the packaged configs

    model = open_clip.create_model("dejavu-tiny-resnet")
    path = sets / "resnet.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    result = _audit(sets, "--k", "1", "--model", "dejavu-tiny-vit", model=str(path))
    _assert_clean_failure(result, "resnet.pt")


def test_audit_bad_rank_choice(sets):
    result = _audit(sets, "--rank", "best")
    assert result.exit_code == 2


def test_audit_without_reference(sets):
    args = [
        "audit",
        "--target", "x.pt",
        "--target-set", str(sets / "target.csv"),
        "--public-set", str(sets / "public.csv"),
        "--out", str(sets / "run"),
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    _assert_clean_failure(result, "no reference given")


def test_audit_refuses_foreign_output_folder(sets):
    (sets / "run").mkdir()
    (sets / "run" / "keep.txt").write_text("precious")
    result = _audit(sets)
    _assert_clean_failure(result, "not empty", "not written by dejavu")
    assert (sets / "run" / "keep.txt").read_text() == "precious"


def test_audit_overwrite_keeps_foreign_output_folder(sets):
    (sets / "run").mkdir()
    (sets / "run" / "keep.txt").write_text("precious")
    result = _audit(sets, "--overwrite")
    _assert_clean_failure(result, "not written by dejavu", "empty it yourself")
    assert (sets / "run" / "keep.txt").read_text() == "precious"
