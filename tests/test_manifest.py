"""Reading manifests in every supported format, and rejecting bad records."""

from __future__ import annotations

import io
import json
import tarfile

import pandas as pd
import pytest
from PIL import Image

from dejavu.data.manifest import open_image, parse_objects, read_manifest
from dejavu.errors import InputError


def _png(path, colour=(200, 30, 30)):
    Image.new("RGB", (8, 8), colour).save(path)
    return path


@pytest.fixture
def images(tmp_path):
    return [_png(tmp_path / f"im{i}.png", (40 * i, 10, 10)) for i in range(3)]


def _write_csv(path, rows, header="id,image,caption,objects"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_read_manifest_csv_resolves_relative_images(tmp_path, images):
    path = _write_csv(
        tmp_path / "m.csv", ["a,im0.png,a dog,dog", "b,im1.png,a cat,cat"]
    )
    manifest = read_manifest(path)
    assert manifest.frame["image"].tolist() == [str(images[0]), str(images[1])]


def test_read_manifest_csv_parses_objects_forms(tmp_path, images):
    path = _write_csv(
        tmp_path / "m.csv", ['a,im0.png,x,"[""dog"", ""cat""]"', "b,im1.png,y,dog|cat"]
    )
    manifest = read_manifest(path)
    assert manifest.frame["objects"].tolist() == [["dog", "cat"], ["dog", "cat"]]


def test_read_manifest_tsv(tmp_path, images):
    path = tmp_path / "m.tsv"
    path.write_text("id\timage\tcaption\na\tim0.png\ta dog\n", encoding="utf-8")
    assert read_manifest(path).ids == ["a"]


def test_read_manifest_jsonl(tmp_path, images):
    path = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"id": 1, "image": "im0.png", "caption": "x", "objects": ["dog"]}),
        json.dumps({"id": 2, "image": "im1.png", "caption": "y", "objects": []}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = read_manifest(path)
    assert manifest.ids == ["1", "2"]


def test_read_manifest_parquet_list_column(tmp_path, images):
    path = tmp_path / "m.parquet"
    pd.DataFrame(
        {"id": ["a"], "image": ["im0.png"], "caption": ["x"], "objects": [["dog"]]}
    ).to_parquet(path)
    assert read_manifest(path).frame["objects"].tolist() == [["dog"]]


def test_read_manifest_webdataset_shard(tmp_path, images):
    shard = tmp_path / "shards" / "00000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for key in ("000", "001"):
            members = {
                ".jpg": images[0].read_bytes(),
                ".txt": f"caption {key}".encode(),
                ".json": json.dumps({"objects": ["dog"]}).encode(),
            }
            for ext, data in members.items():
                info = tarfile.TarInfo(key + ext)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    manifest = read_manifest(shard.parent, require=("id", "image", "caption"))
    assert manifest.frame["caption"].tolist() == ["caption 000", "caption 001"]
    assert open_image(manifest.frame["image"][0]).size == (8, 8)


def test_read_manifest_records_image_hashes(tmp_path, images):
    path = _write_csv(tmp_path / "m.csv", ["a,im0.png,x,dog", "b,im0.png,y,dog"])
    hashes = read_manifest(path).image_hashes
    assert hashes[0] == hashes[1]


def test_read_manifest_missing_file_names_path(tmp_path):
    with pytest.raises(InputError, match="nope.csv does not exist"):
        read_manifest(tmp_path / "nope.csv")


def test_read_manifest_missing_column_names_it(tmp_path, images):
    path = _write_csv(tmp_path / "m.csv", ["a,im0.png"], header="id,image")
    with pytest.raises(InputError, match="no column 'caption'"):
        read_manifest(path, require=("id", "image", "caption"))


def test_read_manifest_duplicate_ids_name_rows(tmp_path, images):
    path = _write_csv(tmp_path / "m.csv", ["a,im0.png,x,dog", "a,im1.png,y,dog"])
    with pytest.raises(InputError, match="id 'a' appears in rows 1, 2"):
        read_manifest(path)


@pytest.mark.parametrize(
    ("image_bytes", "reason"),
    [
        (None, "does not exist"),
        (b"not an image", "is not an image file"),
    ],
)
def test_read_manifest_bad_image_names_row(tmp_path, images, image_bytes, reason):
    if image_bytes is not None:
        (tmp_path / "bad.png").write_bytes(image_bytes)
    path = _write_csv(tmp_path / "m.csv", ["a,im0.png,x,dog", "b,bad.png,y,dog"])
    with pytest.raises(InputError, match=f"row 2 \\(id 'b'\\): image .* {reason}"):
        read_manifest(path)


def test_read_manifest_truncated_image_is_bad(tmp_path, images):
    data = images[0].read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    path = _write_csv(tmp_path / "m.csv", ["a,cut.png,x,dog"])
    with pytest.raises(InputError, match="row 1 .*cannot be decoded|not an image"):
        read_manifest(path)


def test_read_manifest_empty_caption_is_bad(tmp_path, images):
    path = _write_csv(tmp_path / "m.csv", ["a,im0.png,,dog"])
    with pytest.raises(InputError, match="row 1 \\(id 'a'\\): the caption is empty"):
        read_manifest(path, require=("id", "image", "caption"))


def test_read_manifest_unparsable_row_is_bad(tmp_path, images):
    path = _write_csv(tmp_path / "m.csv", ["a,im0.png,x,dog,extra"])
    with pytest.raises(InputError, match="row 1 .*5 fields but the header has 4"):
        read_manifest(path)


def test_read_manifest_skip_bad_records_lists_them(tmp_path, images):
    path = _write_csv(
        tmp_path / "m.csv", ["a,im0.png,x,dog", "b,missing.png,y,dog", "c,im1.png,,dog"]
    )
    manifest = read_manifest(
        path, require=("id", "image", "caption"), skip_bad_records=True
    )
    assert manifest.ids == ["a"]
    assert [row["id"] for row in manifest.skipped] == ["b", "c"]


def test_read_manifest_unknown_format(tmp_path):
    path = tmp_path / "m.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(InputError, match="unknown format '.xlsx'"):
        read_manifest(path)


def test_parse_objects_missing_value_is_none():
    assert parse_objects(None) is None


def test_parse_objects_bad_json_raises():
    with pytest.raises(ValueError, match="not a JSON list"):
        parse_objects("[dog")
