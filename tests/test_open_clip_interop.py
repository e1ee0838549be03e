"""A checkpoint written by open_clip's own trainer loads and audits with dejavu.

The test runs ``python -m open_clip_train.main`` (from ``open_clip_torch[training]``)
for one epoch on a CSV data set of tiny shape images, with the packaged tiny ViT
config handed over as a ``local-dir:`` folder.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("open_clip_train.main", reason="needs open_clip_torch[training]")

COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 40)}
SHAPES = ("square", "circle")


def _write_images(folder: Path, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        image = Image.new("RGB", (64, 64), (245, 245, 245))
        x, y, side = rng.randint(2, 26), rng.randint(2, 26), rng.randint(24, 34)
        draw = ImageDraw.Draw(image)
        box = [x, y, x + side, y + side]
        if shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.ellipse(box, fill=COLOURS[colour])
        path = folder / f"{i}.png"
        image.save(path)
        rows.append(
            {
                "id": f"{folder.name}-{i}",
                "image": str(path),
                "caption": f"a {colour} {shape}",
                "objects": json.dumps([colour, shape]),
            }
        )
    return rows


def _write_manifest(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "image", "caption", "objects"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def open_clip_run(tmp_path_factory) -> dict:
    """Train one epoch with open_clip's trainer; return the data and checkpoint."""
    from dejavu.models import resolve_model_config

    root = tmp_path_factory.mktemp("open-clip-train")
    rows = _write_images(root / "train", 32, seed=0)

    # open_clip's CSV loader reads a tab-separated file with image paths as given.
    train_tsv = root / "train.tsv"
    with open(train_tsv, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["filepath", "title"])
        writer.writerows([row["image"], row["caption"]] for row in rows)

    _, config = resolve_model_config("dejavu-tiny-vit")
    model_dir = root / "model"
    model_dir.mkdir()
    (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))

    command = [sys.executable, "-m", "open_clip_train.main"]
    command += ["--train-data", str(train_tsv), "--dataset-type", "csv"]
    command += ["--csv-img-key", "filepath", "--csv-caption-key", "title"]
    command += ["--model", f"local-dir:{model_dir}"]
    command += ["--batch-size", "8", "--epochs", "1", "--lr", "1e-3"]
    command += ["--warmup", "1", "--workers", "0", "--device", "cpu"]
    command += ["--precision", "fp32", "--seed", "0"]
    command += ["--logs", str(root / "logs"), "--name", "interop"]
    finished = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=600
    )
    checkpoint = root / "logs" / "interop" / "checkpoints" / "epoch_1.pt"
    # open_clip's trainer exits 0 even when it refuses to start, so the checkpoint
    # file is the evidence that it trained.
    assert checkpoint.is_file(), finished.stdout[-3000:] + finished.stderr[-3000:]

    members = _write_manifest(root / "members.csv", rows)
    public = _write_manifest(
        root / "public.csv", _write_images(root / "public", 40, seed=1)
    )
    return {"checkpoint": checkpoint, "members": members, "public": public}


def test_open_clip_checkpoint_has_trainer_keys(open_clip_run):
    from dejavu.models import checkpoint_metadata

    metadata = checkpoint_metadata(open_clip_run["checkpoint"])
    assert metadata["epoch"] == 1
    assert metadata["name"] == "interop"


def test_open_clip_checkpoint_loads_with_inferred_architecture(open_clip_run):
    from dejavu.models import load_clip

    encoder = load_clip(open_clip_run["checkpoint"], device="cpu")
    assert encoder.model_config["vision_cfg"]["width"] == 192


def test_open_clip_checkpoint_encodes_images_and_captions(open_clip_run):
    from dejavu.data.manifest import open_image
    from dejavu.models import load_clip

    encoder = load_clip(
        open_clip_run["checkpoint"], model="dejavu-tiny-vit", device="cpu"
    )
    public = sorted((Path(open_clip_run["public"]).parent / "public").glob("*.png"))
    images = [open_image(str(path)) for path in public[:4]]
    image_embeddings = encoder.encode_images(images)
    text_embeddings = encoder.encode_texts(["a red square", "a blue circle"])
    assert image_embeddings.shape == (4, 128)
    assert text_embeddings.shape == (2, 128)
    assert np.allclose(np.linalg.norm(image_embeddings, axis=1), 1.0, atol=1e-5)


def test_open_clip_checkpoint_audits(open_clip_run, tmp_path):
    from dejavu.audit import AuditConfig, run_audit

    # The same model as target and reference retrieves the same neighbours, so
    # every gap is exactly zero.
    config = AuditConfig(
        target=str(open_clip_run["checkpoint"]),
        reference=str(open_clip_run["checkpoint"]),
        target_set=str(open_clip_run["members"]),
        public_set=str(open_clip_run["public"]),
        out=str(tmp_path / "audit"),
        k=[1, 5],
        bootstrap=50,
        device="cpu",
        progress=False,
        write_report=False,
    )
    run = Path(run_audit(config))
    summary = json.loads((run / "summary.json").read_text())
    gaps = [entry["ppg"]["value"] for entry in summary["results"]]
    assert gaps == [0.0, 0.0]
