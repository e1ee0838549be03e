"""Tests of the synthetic scene generator, its files and the `dejavu scenes` command."""

from __future__ import annotations

import json
import tarfile
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from dejavu._io import sha256_file
from dejavu.cli import main
from dejavu.data._scene_export import TAR_MTIME
from dejavu.data._scene_render import SPRITES
from dejavu.data._scene_vocab import CLASSES, FRIENDLY_NAMES, SINGULAR_PHRASES
from dejavu.data.manifest import read_manifest
from dejavu.data.scenes import (
    SCENE_TYPES,
    VOCABULARY,
    generate_scene,
    preview_grid,
    vocabulary,
    write_scenes,
)
from dejavu.errors import InputError, OutputDirError

COUNTS = {
    "n_target": 16,
    "n_reference": 16,
    "n_control": 8,
    "n_public": 16,
    "n_detector": 12,
}
SIZE = 64


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes") / "set"
    write_scenes(
        out,
        **COUNTS,
        seed=3,
        size=SIZE,
        formats=("manifest", "yolo", "webdataset"),
        progress=False,
    )
    return out


def _frames(scene_dir: Path) -> dict[str, pd.DataFrame]:
    return {
        split: pd.read_parquet(scene_dir / f"{split}.parquet")
        for split in ("target", "reference", "control", "public", "detector")
    }


def _all_rows(scene_dir: Path) -> pd.DataFrame:
    return pd.concat(_frames(scene_dir).values(), ignore_index=True)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# Vocabulary


def test_vocabulary_has_at_least_60_classes():
    assert len(VOCABULARY) >= 60


def test_vocabulary_labels_are_unique():
    assert len(set(VOCABULARY)) == len(VOCABULARY)


def test_vocabulary_labels_are_lower_case():
    assert all(label == label.lower() for label in VOCABULARY)


def test_vocabulary_labels_are_unicode_or_friendly_names():
    for cls in CLASSES:
        name = unicodedata.name(chr(cls.codepoint)).lower()
        assert cls.label == FRIENDLY_NAMES.get(name, name)


def test_vocabulary_function_returns_a_copy():
    names = vocabulary()
    names.append("unicorn")
    assert "unicorn" not in VOCABULARY


def test_vocabulary_order_is_frozen():
    # Detector class ids index into this order; changing it breaks trained weights.
    assert vocabulary()[:5] == [
        "automobile",
        "bus",
        "bicycle",
        "traffic light",
        "stop sign",
    ]


def test_scene_types_at_least_six():
    assert len(SCENE_TYPES) >= 6


# Files written


def test_classes_json_matches_vocabulary(scene_dir):
    names = json.loads((scene_dir / "classes.json").read_text(encoding="utf-8"))
    assert names == list(VOCABULARY)


def test_readme_states_openmoji_licence(scene_dir):
    readme = (scene_dir / "README").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in readme
    assert "OpenMoji" in readme


def test_readme_states_the_seed(scene_dir):
    readme = (scene_dir / "README").read_text(encoding="utf-8")
    assert '"seed": 3' in readme


def test_manifests_have_the_documented_columns(scene_dir):
    for frame in _frames(scene_dir).values():
        assert list(frame.columns) == [
            "id",
            "image",
            "caption",
            "objects",
            "boxes",
            "mentioned",
            "scene",
        ]


def test_manifests_have_the_requested_sizes(scene_dir):
    frames = _frames(scene_dir)
    for split, frame in frames.items():
        assert len(frame) == COUNTS[f"n_{split}"]


def test_ids_are_split_and_number(scene_dir):
    for split, frame in _frames(scene_dir).items():
        assert list(frame["id"]) == [f"{split}-{n}" for n in range(len(frame))]


def test_images_exist_relative_to_manifest(scene_dir):
    for image in _all_rows(scene_dir)["image"]:
        assert (scene_dir / image).is_file()


def test_images_have_the_requested_size(scene_dir):
    for image in _all_rows(scene_dir)["image"]:
        with Image.open(scene_dir / image) as im:
            assert im.size == (SIZE, SIZE)


def test_splits_are_disjoint_by_id(scene_dir):
    ids = _all_rows(scene_dir)["id"]
    assert ids.is_unique


def test_splits_are_disjoint_by_image_bytes(scene_dir):
    hashes = [sha256_file(scene_dir / p) for p in _all_rows(scene_dir)["image"]]
    assert len(set(hashes)) == len(hashes)


def test_csv_manifest_matches_parquet(scene_dir):
    parquet = pd.read_parquet(scene_dir / "target.parquet")
    csv = pd.read_csv(scene_dir / "target.csv")
    assert list(csv["caption"]) == list(parquet["caption"])
    assert [json.loads(v) for v in csv["objects"]] == [
        list(v) for v in parquet["objects"]
    ]
    assert [json.loads(v) for v in csv["boxes"]] == [
        [list(b) for b in v] for v in parquet["boxes"]
    ]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_manifest_reader_accepts_scene_manifest(scene_dir, suffix):
    manifest = read_manifest(scene_dir / f"public{suffix}", set_name="public set")
    parquet = pd.read_parquet(scene_dir / "public.parquet")
    assert list(manifest.frame["id"]) == list(parquet["id"])
    assert [list(v) for v in manifest.frame["objects"]] == [
        list(v) for v in parquet["objects"]
    ]


# Objects, boxes and captions


def test_object_counts_within_range(scene_dir):
    counts = _all_rows(scene_dir)["objects"].map(len)
    assert counts.min() >= 2
    assert counts.max() <= 5


def test_objects_are_vocabulary_labels(scene_dir):
    labels = {label for objects in _all_rows(scene_dir)["objects"] for label in objects}
    assert labels <= set(VOCABULARY)


def test_boxes_align_with_objects(scene_dir):
    for row in _all_rows(scene_dir).itertuples():
        assert len(row.boxes) == len(row.objects)


def test_boxes_lie_inside_image(scene_dir):
    boxes = np.array([b for row in _all_rows(scene_dir)["boxes"] for b in row])
    assert (boxes[:, 0] >= 0).all()
    assert (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= SIZE).all()
    assert (boxes[:, 3] <= SIZE).all()


def test_boxes_are_not_empty(scene_dir):
    boxes = np.array([b for row in _all_rows(scene_dir)["boxes"] for b in row])
    assert (boxes[:, 2] > boxes[:, 0]).all()
    assert (boxes[:, 3] > boxes[:, 1]).all()


@pytest.mark.parametrize("side", [10, 23, 64])
def test_sprite_box_is_tight(side):
    # A box is its sprite's extent, so every edge row and column contains a pixel.
    for class_id in range(0, len(CLASSES), 7):
        sprite, _ = SPRITES.get(class_id, side, False)
        alpha = np.asarray(sprite.getchannel("A")) > 0
        label = CLASSES[class_id].label
        assert alpha[0].any(), label
        assert alpha[-1].any(), label
        assert alpha[:, 0].any(), label
        assert alpha[:, -1].any(), label


def test_every_object_at_least_half_visible(scene_dir):
    for row in _all_rows(scene_dir).itertuples():
        for i, box in enumerate(row.boxes):
            mask = np.zeros((SIZE, SIZE), dtype=bool)
            for later in row.boxes[i + 1 :]:
                mask[later[1] : later[3], later[0] : later[2]] = True
            x1, y1, x2, y2 = box
            hidden = mask[y1:y2, x1:x2].mean()
            assert hidden <= 0.5, f"{row.id} object {i} is {hidden:.0%} hidden"


def test_mentioned_is_subset_of_objects(scene_dir):
    for row in _all_rows(scene_dir).itertuples():
        assert set(row.mentioned) <= set(row.objects), row.id


def test_caption_mentions_at_least_one_object(scene_dir):
    for row in _all_rows(scene_dir).itertuples():
        assert len(row.mentioned) >= 1, row.id


def test_caption_never_mentions_every_class(scene_dir):
    for row in _all_rows(scene_dir).itertuples():
        assert len(set(row.mentioned)) < len(set(row.objects)), row.id


def test_caption_names_each_mentioned_label(scene_dir):
    plural = {cls.label: cls.plural for cls in CLASSES}
    for row in _all_rows(scene_dir).itertuples():
        for label in row.mentioned:
            words = (label, plural[label], SINGULAR_PHRASES.get(label, label))
            assert any(w in row.caption for w in words), (row.caption, label)


def test_single_object_caption_mentions_it():
    scene = generate_scene("target", 0, objects_per_image=(1, 1))
    assert scene.mentioned == scene.objects


def test_mention_fraction_one_leaves_one_class_out():
    for n in range(10):
        scene = generate_scene("public", n, mention_fraction=1.0)
        assert len(set(scene.mentioned)) == len(set(scene.objects)) - 1


def test_mention_fraction_zero_names_one_class():
    for n in range(10):
        scene = generate_scene("public", n, mention_fraction=0.0)
        assert len(scene.mentioned) == 1


def test_captions_use_many_templates():
    captions = [generate_scene("public", n).caption for n in range(60)]
    openings = {" ".join(c.split()[:2]) for c in captions}
    assert len(openings) >= 15


def test_scene_types_restrict_scenes():
    scenes = {generate_scene("target", n, scene_types=["farm"]).scene for n in range(8)}
    assert scenes == {"farm"}


def test_scene_types_change_object_frequencies():
    def cow_share(scene_type):
        objects = [
            label
            for n in range(80)
            for label in generate_scene("public", n, scene_types=[scene_type]).objects
        ]
        return objects.count("cow") / len(objects)

    assert cow_share("farm") > 5 * cow_share("street")


def test_photo_backgrounds_render():
    scene = generate_scene("target", 0, backgrounds="photo")
    assert scene.image.size == (SIZE, SIZE)


def test_large_images_keep_objects_inside():
    scene = generate_scene("target", 1, size=256, objects_per_image=(8, 8))
    boxes = np.array(scene.boxes)
    assert (boxes[:, 2:] <= 256).all()
    assert len(scene.objects) == 8


# Determinism


def test_same_seed_gives_identical_bytes(scene_dir, tmp_path):
    again = tmp_path / "again"
    write_scenes(
        again,
        **COUNTS,
        seed=3,
        size=SIZE,
        formats=("manifest", "yolo", "webdataset"),
        progress=False,
    )
    assert _files(again) == _files(scene_dir)


def test_parallel_workers_give_identical_bytes(tmp_path):
    # 300 images: enough to start worker processes instead of drawing in-process.
    settings = {"n_public": 300, "seed": 2, "progress": False}
    write_scenes(tmp_path / "one", **settings, workers=1)
    write_scenes(tmp_path / "two", **settings, workers=2)
    assert _files(tmp_path / "two") == _files(tmp_path / "one")


def test_different_seed_gives_different_images(scene_dir, tmp_path):
    other = tmp_path / "other"
    write_scenes(other, n_target=COUNTS["n_target"], seed=4, progress=False)
    first = (scene_dir / "target/images/target-0.png").read_bytes()
    assert (other / "target/images/target-0.png").read_bytes() != first


def test_scene_does_not_depend_on_split_size(scene_dir):
    scene = generate_scene("target", 5, seed=3, size=SIZE)
    frame = _frames(scene_dir)["target"]
    with Image.open(scene_dir / frame.loc[5, "image"]) as im:
        written = np.asarray(im.convert("RGB"))
    assert np.array_equal(np.asarray(scene.image), written)


# YOLO copy


def test_yolo_data_yaml_names_match_vocabulary(scene_dir):
    data = yaml.safe_load((scene_dir / "yolo/data.yaml").read_text(encoding="utf-8"))
    assert [data["names"][i] for i in range(data["nc"])] == list(VOCABULARY)


def test_yolo_parts_cover_detector_split(scene_dir):
    ids = [
        p.stem
        for part in ("train", "val")
        for p in (scene_dir / "yolo/images" / part).iterdir()
    ]
    assert sorted(ids) == sorted(_frames(scene_dir)["detector"]["id"])


def test_yolo_val_part_is_not_empty(scene_dir):
    assert any((scene_dir / "yolo/labels/val").iterdir())


def test_yolo_labels_match_manifest(scene_dir):
    frame = _frames(scene_dir)["detector"].set_index("id")
    for path in (scene_dir / "yolo/labels").rglob("*.txt"):
        row = frame.loc[path.stem]
        lines = path.read_text(encoding="utf-8").split("\n")
        values = np.array([line.split() for line in lines if line], dtype=float)
        labels = [VOCABULARY[int(c)] for c in values[:, 0]]
        cx, cy, w, h = (values[:, i] * SIZE for i in range(1, 5))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        assert labels == list(row["objects"]), path.name
        assert np.allclose(boxes, np.array([list(b) for b in row["boxes"]]), atol=1e-3)


def test_yolo_images_equal_manifest_images(scene_dir):
    for path in (scene_dir / "yolo/images").rglob("*.png"):
        original = scene_dir / "detector/images" / path.name
        assert path.read_bytes() == original.read_bytes()


# WebDataset copy


def test_webdataset_members_follow_img2dataset_layout(scene_dir):
    with tarfile.open(scene_dir / "webdataset/control/00000.tar") as tar:
        names = tar.getnames()
    expected = [
        f"control-{n}.{ext}"
        for n in range(COUNTS["n_control"])
        for ext in ("jpg", "txt", "json")
    ]
    assert names == expected


def test_webdataset_headers_have_fixed_time(scene_dir):
    with tarfile.open(scene_dir / "webdataset/control/00000.tar") as tar:
        times = {member.mtime for member in tar.getmembers()}
    assert times == {TAR_MTIME}


def test_webdataset_matches_manifest(scene_dir):
    manifest = read_manifest(
        scene_dir / "webdataset/reference", set_name="reference set"
    )
    frame = _frames(scene_dir)["reference"]
    assert list(manifest.frame["id"]) == list(frame["id"])
    assert list(manifest.frame["caption"]) == list(frame["caption"])
    assert [list(v) for v in manifest.frame["objects"]] == [
        list(v) for v in frame["objects"]
    ]


# Output folder rules


def test_rerun_with_same_settings_reuses_folder(scene_dir):
    stamp = (scene_dir / ".dejavu-run.json").read_bytes()
    write_scenes(
        scene_dir,
        **COUNTS,
        seed=3,
        size=SIZE,
        formats=("manifest", "yolo", "webdataset"),
        progress=False,
    )
    assert (scene_dir / ".dejavu-run.json").read_bytes() == stamp


def test_other_settings_reject_written_folder(scene_dir):
    with pytest.raises(OutputDirError, match="different settings") as error:
        write_scenes(scene_dir, n_target=2, seed=9, progress=False)
    # The message names what changed.
    assert "seed: 3 then, 9 now" in str(error.value)


def test_overwrite_replaces_folder(tmp_path):
    out = tmp_path / "scenes"
    write_scenes(out, n_target=3, n_public=2, progress=False)
    write_scenes(out, n_target=2, seed=1, overwrite=True, progress=False)
    assert not (out / "public.parquet").exists()


def test_unwritable_output_folder_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputDirError):
        write_scenes(blocker / "scenes", n_target=2, progress=False)


# Bad settings


def test_zero_images_raises(tmp_path):
    with pytest.raises(InputError, match="no images"):
        write_scenes(tmp_path / "out", progress=False)


def test_too_many_objects_raises(tmp_path):
    with pytest.raises(InputError, match="do not fit"):
        write_scenes(tmp_path / "out", n_target=2, objects_per_image=(2, 40))


def test_unknown_scene_type_raises(tmp_path):
    with pytest.raises(InputError, match="unknown scene type 'moon'"):
        write_scenes(tmp_path / "out", n_target=2, scene_types=["farm", "moon"])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("mention_fraction", 1.5, "outside"),
        ("size", 16, "too small"),
        ("objects_per_image", (4, 2), "invalid"),
        ("objects_per_image", (0, 2), "invalid"),
        ("backgrounds", "clouds", "background"),
        ("formats", ("manifest", "coco"), "unknown format"),
        ("n_target", -1, "n_target|target images"),
        ("workers", 0, "workers"),
    ],
)
def test_invalid_setting_raises(tmp_path, option, value, message):
    settings = {"n_target": 2, option: value}
    with pytest.raises(InputError, match=message):
        write_scenes(tmp_path / "out", **settings, progress=False)


def test_bad_setting_leaves_no_folder(tmp_path):
    with pytest.raises(InputError):
        write_scenes(tmp_path / "out", n_target=2, scene_types=["moon"])
    assert not (tmp_path / "out").exists()


# Command line


def test_cli_scenes_writes_manifests(tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main,
        ["scenes", "--out", str(out), "--n-target", "3", "--n-public", "2", "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert (out / "public.parquet").is_file()


def test_cli_scenes_parses_objects_range(tmp_path):
    out = tmp_path / "cli"
    args = ["scenes", "--out", str(out), "--n-target", "4", "--objects-per-image", "3"]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    counts = pd.read_parquet(out / "target.parquet")["objects"].map(len)
    assert set(counts) == {3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "no images"),
        (["--n-target", "2", "--objects-per-image", "2-40"], "do not fit"),
        (["--n-target", "2", "--scene-types", "moon"], "unknown scene type"),
        (["--n-target", "2", "--objects-per-image", "two"], "range"),
    ],
)
def test_cli_scenes_bad_settings_exit_nonzero(tmp_path, args, message):
    result = CliRunner().invoke(main, ["scenes", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code != 0
    assert message in result.output


# Preview


def test_preview_grid_has_one_cell_per_scene():
    grid = preview_grid(6, columns=3, scale=2)
    assert grid.width == 3 * (SIZE * 2 + 12)
