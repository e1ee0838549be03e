"""Tests of `dejavu split`: disjoint, seeded, stratified sets and duplicate images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from dejavu._io import sha256_file
from dejavu.cli import main
from dejavu.data.manifest import read_manifest
from dejavu.data.scenes import write_scenes
from dejavu.data.split import SET_NAMES, split_manifest
from dejavu.errors import InputError

N_SCENES = 60
# Records whose images are copies of another record's image.
DUPLICATES = {"copy-a": "public-0", "copy-b": "public-0", "copy-c": "public-7"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A scene manifest of N_SCENES records plus three exact duplicate images."""
    root = tmp_path_factory.mktemp("split")
    scenes = root / "scenes"
    write_scenes(
        scenes, n_public=N_SCENES, seed=5, formats=("manifest",), progress=False
    )
    frame = pd.read_parquet(scenes / "public.parquet")
    extra = []
    for new_id, source in DUPLICATES.items():
        row = frame.set_index("id").loc[source].to_dict()
        image = f"public/images/{new_id}.png"
        shutil.copyfile(scenes / row["image"], scenes / image)
        extra.append({**row, "id": new_id, "image": image})
    frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    path = scenes / "records.parquet"
    frame.to_parquet(path, index=False)
    return path


def _sets(out: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_parquet(out / f"{name}.parquet")
        for name in SET_NAMES
        if (out / f"{name}.parquet").exists()
    }


def _report(out: Path) -> dict:
    return json.loads((out / "split.json").read_text(encoding="utf-8"))


SIZES = {"target": 15, "reference": 15, "control": 10, "public": 20}


def test_split_sets_are_disjoint_by_id(data, tmp_path):
    split_manifest(data, tmp_path / "s", SIZES, progress=False)
    ids = [i for frame in _sets(tmp_path / "s").values() for i in frame["id"]]
    assert len(ids) == len(set(ids))


def test_split_sets_are_disjoint_by_image_bytes(data, tmp_path):
    out = tmp_path / "s"
    split_manifest(data, out, SIZES, progress=False)
    owner = {}
    for name, frame in _sets(out).items():
        for image in frame["image"]:
            owner.setdefault(sha256_file(out / image), set()).add(name)
    assert all(len(names) == 1 for names in owner.values())


def test_split_reports_duplicate_images(data, tmp_path):
    split_manifest(data, tmp_path / "s", SIZES, progress=False)
    groups = sorted(sorted(g) for g in _report(tmp_path / "s")["duplicate_groups"])
    assert groups == [
        ["copy-a", "copy-b", "public-0"],
        ["copy-c", "public-7"],
    ]


def test_split_counts_are_exact(data, tmp_path):
    split_manifest(data, tmp_path / "s", SIZES, progress=False)
    sizes = {name: len(frame) for name, frame in _sets(tmp_path / "s").items()}
    assert sizes == SIZES


def test_split_fractions_are_rounded_counts(data, tmp_path):
    fractions = {"target": 0.5, "public": 0.25}
    split_manifest(data, tmp_path / "s", fractions, progress=False)
    n = N_SCENES + len(DUPLICATES)
    sizes = {name: len(frame) for name, frame in _sets(tmp_path / "s").items()}
    # 63 records: 31.5 and 15.75 round by largest remainder to 31 and 16, which
    # keeps the total at round(0.75 * 63) = 47.
    assert n == 63
    assert sizes == {"target": 31, "public": 16}


def test_split_fractions_summing_to_one_use_every_record(data, tmp_path):
    split_manifest(data, tmp_path / "s", {"target": 0.5, "reference": 0.5})
    sizes = [len(frame) for frame in _sets(tmp_path / "s").values()]
    assert sum(sizes) == N_SCENES + len(DUPLICATES)


def test_split_reports_unassigned_records(data, tmp_path):
    split_manifest(data, tmp_path / "s", {"target": 10}, progress=False)
    n = N_SCENES + len(DUPLICATES)
    assert _report(tmp_path / "s")["unassigned_records"] == n - 10


def test_split_drop_duplicates_keeps_one_per_group(data, tmp_path):
    out = tmp_path / "s"
    split_manifest(data, out, {"target": 1.0}, drop_duplicates=True, progress=False)
    ids = set(_sets(out)["target"]["id"])
    assert len(ids) == N_SCENES
    assert not {"copy-a", "copy-b", "copy-c"} & ids


def test_split_same_seed_same_sets(data, tmp_path):
    split_manifest(data, tmp_path / "a", SIZES, seed=1, progress=False)
    split_manifest(data, tmp_path / "b", SIZES, seed=1, progress=False)
    first = _sets(tmp_path / "a")["target"]["id"].tolist()
    assert _sets(tmp_path / "b")["target"]["id"].tolist() == first


def test_split_other_seed_other_sets(data, tmp_path):
    split_manifest(data, tmp_path / "a", SIZES, seed=1, progress=False)
    split_manifest(data, tmp_path / "b", SIZES, seed=2, progress=False)
    first = _sets(tmp_path / "a")["target"]["id"].tolist()
    assert _sets(tmp_path / "b")["target"]["id"].tolist() != first


def test_split_stratify_keeps_mix_equal(data, tmp_path):
    out = tmp_path / "s"
    sizes = {"target": 0.5, "reference": 0.5}
    split_manifest(data, out, sizes, stratify="scene", progress=False)
    sets = _sets(out)
    target = sets["target"]["scene"].value_counts()
    reference = sets["reference"]["scene"].value_counts()
    for scene in set(target.index) | set(reference.index):
        gap = abs(target.get(scene, 0) - reference.get(scene, 0))
        assert gap <= 1, scene


def test_split_stratify_records_mix_in_report(data, tmp_path):
    out = tmp_path / "s"
    split_manifest(data, out, SIZES, stratify="scene", progress=False)
    mix = _report(out)["sets"]["target"]["mix"]
    assert sum(mix.values()) == SIZES["target"]


def test_split_keeps_every_column(data, tmp_path):
    split_manifest(data, tmp_path / "s", SIZES, progress=False)
    columns = list(_sets(tmp_path / "s")["target"].columns)
    assert columns == list(pd.read_parquet(data).columns)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_split_output_reads_as_manifest(data, tmp_path, suffix):
    split_manifest(data, tmp_path / "s", SIZES, progress=False)
    manifest = read_manifest(tmp_path / "s" / f"control{suffix}", set_name="control")
    assert len(manifest) == SIZES["control"]


def test_split_keeps_shard_references(tmp_path):
    scenes = tmp_path / "scenes"
    write_scenes(
        scenes, n_public=12, formats=("manifest", "webdataset"), progress=False
    )
    out = tmp_path / "s"
    split_manifest(scenes / "webdataset/public", out, {"target": 6}, progress=False)
    images = _sets(out)["target"]["image"]
    assert all(ref.startswith("tar://") for ref in images)


def test_split_too_many_records_raises(data, tmp_path):
    with pytest.raises(InputError, match="usable records"):
        split_manifest(data, tmp_path / "s", {"target": 50, "public": 50})


def test_split_unknown_stratify_column_raises(data, tmp_path):
    with pytest.raises(InputError, match="no such column"):
        split_manifest(data, tmp_path / "s", SIZES, stratify="colour")


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"target": 1.5}, "outside"),
        ({"target": -3}, "negative"),
        ({"training": 3}, "unknown set"),
        ({}, "no set sizes"),
        ({"target": "ten"}, "not a number"),
    ],
)
def test_split_invalid_sizes_raise(data, tmp_path, sizes, message):
    with pytest.raises(InputError, match=message):
        split_manifest(data, tmp_path / "s", sizes)


def test_split_rejects_folder_of_other_command(data, tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty"):
        split_manifest(data, out, SIZES, progress=False)


def test_cli_split_reports_duplicates(data, tmp_path):
    args = ["split", "--data", str(data), "--out", str(tmp_path / "s")]
    sizes = ["--target-size", "0.4", "--public-size", "20", "--quiet"]
    result = CliRunner().invoke(main, [*args, *sizes])
    assert result.exit_code == 0, result.output
    assert "2 groups of identical images" in result.output


def test_cli_split_bad_size_exits_nonzero(data, tmp_path):
    args = ["split", "--data", str(data), "--out", str(tmp_path / "s")]
    result = CliRunner().invoke(main, [*args, "--target-size", "many"])
    assert result.exit_code != 0
    assert "fraction" in result.output
