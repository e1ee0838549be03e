"""Tests of annotation: detector backend, labels file, cache, COCO, label maps.

A yolo11n built from its YAML is trained for one epoch on a few scenes at 64 px
(module fixture, seconds on CPU); its detections are poor but real, which is all
these tests need. The shipped scene detector is tested in test_detector.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from dejavu.annotate import annotate, detect_manifest, read_labels_file, resolve_labels
from dejavu.annotate.labelmap import load_label_map
from dejavu.cli import main
from dejavu.data.manifest import read_manifest
from dejavu.errors import InputError, ModelLoadError

N_SCENES = 30


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    from dejavu.data.scenes import write_scenes

    out = tmp_path_factory.mktemp("annotate-scenes") / "scenes"
    write_scenes(
        out,
        n_detector=N_SCENES,
        seed=11,
        size=64,
        formats=("manifest", "yolo"),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def trained(scenes, tmp_path_factory) -> dict:
    from dejavu.annotate.yolo import train_detector

    out = tmp_path_factory.mktemp("annotate-detector")
    return train_detector(
        scenes / "yolo",
        out,
        model="yolo11n.yaml",
        epochs=1,
        imgsz=64,
        batch_size=8,
        device="cpu",
    )


@pytest.fixture(scope="module")
def weights(trained) -> Path:
    return Path(trained["weights"])


def _write_manifest(path: Path, frame: pd.DataFrame) -> Path:
    frame = frame.copy()
    if "objects" in frame.columns:
        frame["objects"] = [
            v if isinstance(v, str) else json.dumps(list(v)) for v in frame["objects"]
        ]
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def manifest_csv(scenes, tmp_path) -> Path:
    """A CSV manifest of the first 12 scenes, with absolute image paths."""
    frame = read_manifest(scenes / "detector.parquet", check_images=False).frame
    frame = frame[["id", "image", "objects"]].head(12)
    return _write_manifest(tmp_path / "data.csv", frame)


# Low confidence, so that a one-epoch model returns boxes at all.
OPTIONS = {"conf": 1e-5, "batch_size": 4}


def test_train_detector_writes_weights_and_map(trained):
    assert Path(trained["weights"]).is_file()
    assert 0.0 <= trained["map50"] <= 1.0
    assert 0.0 <= trained["map50_95"] <= trained["map50"]


def test_annotate_cli_writes_labels_file(weights, manifest_csv, tmp_path):
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        main,
        ["annotate", "--data", str(manifest_csv), "--detector", str(weights)]
        + ["--out", str(out), "--conf", "0.00001", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    frame, metadata = read_labels_file(out)
    assert frame["id"].tolist() == [f"detector-{i}" for i in range(12)]
    assert set(frame.columns) >= {"id", "sha256", "labels", "boxes", "scores"}
    assert all(len(h) == 64 for h in frame["sha256"])
    assert sum(len(b) for b in frame["boxes"]) > 0
    assert all(len(box) == 4 for boxes in frame["boxes"] for box in boxes)
    assert all(
        len(b) == len(s) == len(lab)
        for b, s, lab in zip(frame["boxes"], frame["scores"], frame["box_labels"])
    )
    assert all(labels == sorted(set(labels)) for labels in frame["labels"])
    assert len(metadata["vocabulary"]) == 72
    assert metadata["settings"]["conf"] == 1e-5
    assert metadata["settings"]["imgsz"] == 64
    assert len(metadata["settings"]["weights_sha256"]) == 64


def test_annotate_labels_are_detector_classes(weights, scenes, manifest_csv, tmp_path):
    manifest = read_manifest(manifest_csv)
    result = annotate(
        manifest,
        tmp_path / "l.parquet",
        detector=weights,
        options=OPTIONS,
        progress=False,
    )
    classes = set(json.loads((scenes / "classes.json").read_text()))
    found = {label for labels in result.frame["labels"] for label in labels}
    assert found <= classes


def test_cache_detects_only_new_images(weights, scenes, tmp_path):
    frame = read_manifest(scenes / "detector.parquet", check_images=False).frame
    frame = frame[["id", "image"]]
    small = read_manifest(_write_manifest(tmp_path / "a.csv", frame.head(8)))
    grown = read_manifest(_write_manifest(tmp_path / "b.csv", frame.head(11)))
    cache = tmp_path / "cache"
    first = detect_manifest(
        small, weights, options=OPTIONS, cache_dir=cache, progress=False
    )
    second = detect_manifest(
        grown, weights, options=OPTIONS, cache_dir=cache, progress=False
    )
    assert first.detected == 8
    assert second.detected == 3
    assert second.frame.head(8)["labels"].tolist() == first.frame["labels"].tolist()


def test_cache_resumes_interrupted_run(weights, scenes, tmp_path, monkeypatch):
    from dejavu.annotate.yolo import YoloDetector

    frame = read_manifest(scenes / "detector.parquet", check_images=False).frame
    manifest = read_manifest(
        _write_manifest(tmp_path / "a.csv", frame[["id", "image"]].head(10))
    )
    cache = tmp_path / "cache"
    detector = YoloDetector(weights, **OPTIONS)
    calls = []
    real_detect = detector.detect

    def detect_then_fail(images):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_detect(images)

    monkeypatch.setattr(detector, "detect", detect_then_fail)
    with pytest.raises(KeyboardInterrupt):
        detect_manifest(
            manifest, detector, cache_dir=cache, chunk_size=4, progress=False
        )
    resumed = detect_manifest(
        manifest,
        weights,
        options=OPTIONS,
        cache_dir=cache,
        chunk_size=4,
        progress=False,
    )
    assert len(list(cache.glob("detections-*/part-*.parquet"))) == 3
    assert resumed.detected == 6


def test_cache_key_changes_with_conf(weights, manifest_csv, tmp_path):
    manifest = read_manifest(manifest_csv)
    cache = tmp_path / "cache"
    detect_manifest(manifest, weights, options=OPTIONS, cache_dir=cache, progress=False)
    other = detect_manifest(
        manifest,
        weights,
        options={**OPTIONS, "conf": 0.5},
        cache_dir=cache,
        progress=False,
    )
    assert other.detected == len(manifest)


def test_annotate_opens_no_network_connection(weights, manifest_csv, tmp_path):
    # A fresh interpreter, so that importing ultralytics is part of the test, with
    # the offline switches removed: local weights alone must keep it offline.
    out = tmp_path / "labels.parquet"
    script = (
        "import atexit, socket, sys\n"
        "attempts = []\n"
        "def refuse(*args, **kwargs):\n"
        "    attempts.append(args)\n"
        "    raise OSError('network access attempted')\n"
        "socket.socket.connect = refuse\n"
        "socket.socket.connect_ex = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "atexit.register(lambda: print('network attempts:', len(attempts)))\n"
        "from dejavu.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "yolo-config")
    completed = subprocess.run(
        [sys.executable, "-c", script, "annotate", "--data", str(manifest_csv)]
        + ["--detector", str(weights), "--out", str(out), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "network attempts: 0" in completed.stdout
    assert out.is_file()


def test_annotate_no_network_in_process(weights, manifest_csv, tmp_path, no_network):
    manifest = read_manifest(manifest_csv)
    result = annotate(
        manifest,
        tmp_path / "l.parquet",
        detector=weights,
        options=OPTIONS,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert len(result.frame) == len(manifest)


def test_import_ultralytics_keeps_pil_errors(tmp_path):
    from PIL import Image, UnidentifiedImageError

    from dejavu.annotate.yolo import import_ultralytics

    import_ultralytics()
    path = tmp_path / "not-an-image.png"
    path.write_bytes(b"plain text, not an image")
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)


def test_missing_weights_raise_with_location(manifest_csv, tmp_path):
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        main,
        ["annotate", "--data", str(manifest_csv), "--detector", "missing/w.pt"]
        + ["--out", str(out)],
    )
    assert result.exit_code == 1
    assert "missing/w.pt not found; put the weights file there" in result.output
    assert not out.exists()


def test_published_name_offline_raises_with_location(manifest_csv):
    manifest = read_manifest(manifest_csv)
    with pytest.raises(ModelLoadError, match="put the file at"):
        detect_manifest(manifest, "yolo11x.pt", progress=False)


def test_corrupt_weights_raise(manifest_csv, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint" * 100)
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        main,
        ["annotate", "--data", str(manifest_csv), "--detector", str(bad)]
        + ["--out", str(out)],
    )
    assert result.exit_code == 1
    assert f"cannot load detector weights {bad}" in result.output
    assert not out.exists()


def test_truncated_weights_raise(weights, manifest_csv, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="cannot load detector weights"):
        detect_manifest(read_manifest(manifest_csv), cut, progress=False)


def _manifest_with_bad_image(scenes, tmp_path) -> Path:
    frame = read_manifest(scenes / "detector.parquet", check_images=False).frame
    frame = frame[["id", "image"]].head(4).copy()
    broken = tmp_path / "broken.png"
    broken.write_bytes(Path(frame["image"].iloc[0]).read_bytes()[:100])
    frame.loc[2, "image"] = str(broken)
    return _write_manifest(tmp_path / "bad.csv", frame)


def test_undecodable_image_raises(weights, scenes, tmp_path):
    path = _manifest_with_bad_image(scenes, tmp_path)
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        main,
        ["annotate", "--data", str(path), "--detector", str(weights)]
        + ["--out", str(out), "--quiet"],
    )
    assert result.exit_code == 1
    assert "id 'detector-2'" in result.output
    assert "--skip-bad-records" in result.output
    assert not out.exists()


def test_undecodable_image_skipped_on_request(weights, scenes, tmp_path):
    path = _manifest_with_bad_image(scenes, tmp_path)
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        main,
        ["annotate", "--data", str(path), "--detector", str(weights)]
        + ["--out", str(out), "--quiet", "--skip-bad-records"],
    )
    assert result.exit_code == 0, result.output
    frame, _ = read_labels_file(out)
    assert frame["id"].tolist() == ["detector-0", "detector-1", "detector-3"]


def test_resolve_labels_lists_skipped_images(weights, scenes, tmp_path):
    path = _manifest_with_bad_image(scenes, tmp_path)
    manifest = read_manifest(path, check_images=False)
    series = resolve_labels(
        manifest,
        detector=weights,
        detector_options=OPTIONS,
        skip_bad_records=True,
        progress=False,
    )
    assert [row["id"] for row in series.attrs["skipped"]] == ["detector-2"]


def test_empty_manifest_raises(weights, tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("id,image\n")
    manifest = read_manifest(path)
    with pytest.raises(InputError, match="has no records"):
        detect_manifest(manifest, weights, progress=False)


# ---- label maps ---------------------------------------------------------------


def test_label_map_merges_synonyms(weights, manifest_csv, tmp_path):
    label_map = tmp_path / "map.yaml"
    label_map.write_text("man: person\nwoman: person\nautomobile: car\n")
    manifest = read_manifest(manifest_csv)
    result = detect_manifest(
        manifest,
        weights,
        options={**OPTIONS, "label_map": str(label_map)},
        progress=False,
    )
    vocabulary = result.metadata["vocabulary"]
    assert "person" in vocabulary
    assert "man" not in vocabulary
    assert "car" in vocabulary


def test_label_map_null_drops_class(weights, manifest_csv, tmp_path):
    from dejavu.annotate.yolo import YoloDetector

    detector = YoloDetector(weights, **OPTIONS)
    label_map = tmp_path / "map.yaml"
    label_map.write_text(
        "".join(f"{json.dumps(name)}: null\n" for name in detector.names.values())
    )
    result = detect_manifest(
        read_manifest(manifest_csv),
        weights,
        options={**OPTIONS, "label_map": str(label_map)},
        progress=False,
    )
    assert all(labels == [] for labels in result.frame["labels"])


def test_label_map_unknown_class_raises(weights, manifest_csv, tmp_path):
    label_map = tmp_path / "map.yaml"
    label_map.write_text("dining table: table\n")
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        main,
        ["annotate", "--data", str(manifest_csv), "--detector", str(weights)]
        + ["--out", str(out), "--label-map", str(label_map)],
    )
    assert result.exit_code == 1
    assert "'dining table'" in result.output
    assert not out.exists()


def test_label_map_rejects_nested_values(tmp_path):
    label_map = tmp_path / "map.yaml"
    label_map.write_text("cat:\n  - feline\n")
    with pytest.raises(InputError, match="must map a class name"):
        load_label_map(label_map)


def test_classes_option_restricts_labels(weights, manifest_csv):
    result = detect_manifest(
        read_manifest(manifest_csv),
        weights,
        options={**OPTIONS, "classes": ["man", "woman"]},
        progress=False,
    )
    found = {label for labels in result.frame["labels"] for label in labels}
    assert found <= {"man", "woman"}


def test_classes_option_unknown_class_raises(weights, manifest_csv):
    with pytest.raises(InputError, match="'unicorn'"):
        detect_manifest(
            read_manifest(manifest_csv),
            weights,
            options={"classes": ["unicorn"]},
            progress=False,
        )


# ---- COCO ----------------------------------------------------------------------


def _coco_fixture(tmp_path) -> tuple[Path, Path]:
    images = []
    for name in ("a.png", "b.png", "c.png"):
        path = tmp_path / "images" / name
        path.parent.mkdir(exist_ok=True)
        from PIL import Image

        Image.new("RGB", (32, 32), (10, 20, 30)).save(path)
        images.append(path)
    coco = {
        "images": [
            {"id": 1, "file_name": "val/a.png", "width": 32, "height": 32},
            {"id": 2, "file_name": "val/b.png", "width": 32, "height": 32},
            {"id": 3, "file_name": "val/c.png", "width": 32, "height": 32},
        ],
        "categories": [
            {"id": 1, "name": "person"},
            {"id": 62, "name": "chair"},
            {"id": 67, "name": "dining table"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
            {"id": 11, "image_id": 1, "category_id": 67, "bbox": [0, 0, 10, 10]},
            {"id": 12, "image_id": 1, "category_id": 1, "bbox": [5, 5, 3, 3]},
            {"id": 13, "image_id": 2, "category_id": 62, "bbox": [4, 4, 8, 8]},
        ],
    }
    coco_path = tmp_path / "instances_val.json"
    coco_path.write_text(json.dumps(coco))
    manifest = pd.DataFrame(
        {"id": ["r-a", "r-b", "r-c"], "image": [str(p) for p in images]}
    )
    return _write_manifest(tmp_path / "m.csv", manifest), coco_path


def test_coco_labels_match_by_file_name(tmp_path):
    manifest_path, coco = _coco_fixture(tmp_path)
    series = resolve_labels(read_manifest(manifest_path), labels_file=coco)
    assert series.to_dict() == {
        "r-a": ["dining table", "person"],
        "r-b": ["chair"],
        "r-c": [],
    }


def test_coco_labels_match_by_image_id(tmp_path):
    manifest_path, coco = _coco_fixture(tmp_path)
    frame = pd.read_csv(manifest_path)
    frame["id"] = ["1", "2", "3"]
    manifest = read_manifest(_write_manifest(tmp_path / "ids.csv", frame))
    series = resolve_labels(manifest, labels_file=coco)
    assert series["2"] == ["chair"]


def test_coco_label_map_applies(tmp_path):
    manifest_path, coco = _coco_fixture(tmp_path)
    label_map = tmp_path / "map.yaml"
    label_map.write_text("dining table: table\nperson: null\n")
    series = resolve_labels(
        read_manifest(manifest_path),
        labels_file=coco,
        detector_options={"label_map": str(label_map)},
    )
    assert series["r-a"] == ["table"]


def test_coco_annotate_writes_boxes_as_corners(tmp_path):
    manifest_path, coco = _coco_fixture(tmp_path)
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(
        main,
        ["annotate", "--data", str(manifest_path), "--coco", str(coco)]
        + ["--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    frame, metadata = read_labels_file(out)
    assert frame["boxes"].iloc[1] == [[4.0, 4.0, 12.0, 12.0]]
    assert metadata["vocabulary"] == ["chair", "dining table", "person"]


def test_coco_missing_image_raises(tmp_path):
    manifest_path, coco = _coco_fixture(tmp_path)
    frame = pd.read_csv(manifest_path)
    other = tmp_path / "images" / "d.png"
    other.write_bytes((tmp_path / "images" / "a.png").read_bytes())
    frame.loc[2, "image"] = str(other)
    manifest = read_manifest(_write_manifest(tmp_path / "m2.csv", frame))
    with pytest.raises(InputError, match="no image with id 'r-c' or file name 'd.png'"):
        resolve_labels(manifest, labels_file=coco)


def test_coco_label_map_unknown_class_raises(tmp_path):
    manifest_path, coco = _coco_fixture(tmp_path)
    label_map = tmp_path / "map.yaml"
    label_map.write_text("sofa: couch\n")
    with pytest.raises(InputError, match="'sofa'"):
        resolve_labels(
            read_manifest(manifest_path),
            labels_file=coco,
            detector_options={"label_map": str(label_map)},
        )


# ---- resolve_labels ------------------------------------------------------------


def test_resolve_labels_prefers_labels_file(weights, manifest_csv, tmp_path):
    manifest = read_manifest(manifest_csv)
    labels = tmp_path / "labels.parquet"
    from dejavu.annotate.labels_file import write_labels_file

    rows = pd.DataFrame(
        {
            "id": manifest.frame["id"],
            "sha256": manifest.image_hashes,
            "labels": [["zebra"]] * len(manifest),
            "box_labels": [[]] * len(manifest),
            "boxes": [[]] * len(manifest),
            "scores": [[]] * len(manifest),
        }
    )
    write_labels_file(labels, rows, {"vocabulary": ["zebra"]})
    series = resolve_labels(manifest, labels_file=labels, detector=weights)
    assert set(map(tuple, series)) == {("zebra",)}


def test_resolve_labels_uses_objects_column(manifest_csv):
    manifest = read_manifest(manifest_csv)
    series = resolve_labels(manifest)
    expected = [sorted(set(v)) for v in manifest.frame["objects"]]
    assert series.tolist() == expected


def test_resolve_labels_index_is_manifest_order(manifest_csv):
    manifest = read_manifest(manifest_csv)
    assert resolve_labels(manifest).index.tolist() == manifest.ids


def test_resolve_labels_without_source_names_set(tmp_path, scenes):
    frame = read_manifest(scenes / "detector.parquet", check_images=False).frame
    path = _write_manifest(tmp_path / "p.csv", frame[["id", "image"]].head(2))
    manifest = read_manifest(path, set_name="public set")
    with pytest.raises(InputError, match="public set .* has no `objects` column; "):
        resolve_labels(manifest)


def test_resolve_labels_missing_id_raises(weights, manifest_csv, tmp_path):
    manifest = read_manifest(manifest_csv)
    out = tmp_path / "labels.parquet"
    small = read_manifest(
        _write_manifest(tmp_path / "small.csv", pd.read_csv(manifest_csv).head(5))
    )
    annotate(small, out, detector=weights, options=OPTIONS, progress=False)
    with pytest.raises(InputError, match="no labels for id 'detector-5'"):
        resolve_labels(manifest, labels_file=out)


def test_resolve_labels_changed_image_raises(weights, manifest_csv, tmp_path):
    manifest = read_manifest(manifest_csv)
    out = tmp_path / "labels.parquet"
    annotate(manifest, out, detector=weights, options=OPTIONS, progress=False)
    frame = pd.read_csv(manifest_csv)
    frame.loc[0, "image"] = frame.loc[1, "image"]
    changed = read_manifest(_write_manifest(tmp_path / "changed.csv", frame))
    with pytest.raises(InputError, match="different image of id 'detector-0'"):
        resolve_labels(changed, labels_file=out)
