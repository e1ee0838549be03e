"""Tests of zero-shot and linear-probe evaluation on tiny shape images."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from dejavu.cli import main
from dejavu.errors import InputError
from dejavu.evaluate import evaluate_checkpoint
from dejavu.train import train_clip

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 210, 20),
}
SHAPES = ("square", "circle")


def write_shapes(folder: Path, n: int, *, seed: int, columns=None) -> Path:
    """Write ``n`` 64 px images of one coloured shape each, and a CSV manifest.

    ``columns`` picks the manifest columns; ``label`` is the shape's colour.
    """
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        image = Image.new("RGB", (64, 64), (245, 245, 245))
        x, y, side = rng.randint(2, 26), rng.randint(2, 26), rng.randint(24, 34)
        box = [x, y, x + side, y + side]
        draw = ImageDraw.Draw(image)
        if shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.ellipse(box, fill=COLOURS[colour])
        image.save(folder / f"{i}.png")
        rows.append(
            {
                "id": f"shape-{seed}-{i}",
                "image": f"{i}.png",
                "caption": f"a {colour} {shape}",
                "objects": json.dumps([colour, shape]),
                "label": colour,
            }
        )
    columns = columns or ["id", "image", "caption", "objects"]
    path = folder / "data.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny ViT CLIP trained for a few epochs on 64 shape images."""
    root = tmp_path_factory.mktemp("evaluate")
    data = write_shapes(root / "train", 64, seed=0)
    return train_clip(
        data,
        root / "run",
        epochs=4,
        batch_size=16,
        warmup=4,
        device="cpu",
        threads=1,
        progress=False,
    )


@pytest.fixture(scope="module")
def multi_label(tmp_path_factory) -> Path:
    """Held-out shapes with an objects column (colour and shape)."""
    return write_shapes(tmp_path_factory.mktemp("multi"), 50, seed=1)


@pytest.fixture(scope="module")
def single_label(tmp_path_factory) -> Path:
    """Held-out shapes with a label column (the colour)."""
    folder = tmp_path_factory.mktemp("single")
    return write_shapes(folder, 50, seed=2, columns=["id", "image", "label"])


@pytest.fixture(scope="module")
def multi_result(trained, multi_label) -> dict:
    return evaluate_checkpoint(trained, multi_label, device="cpu", progress=False)


def test_evaluate_zero_shot_beats_chance(multi_result):
    assert multi_result["zero_shot"]["value"] > multi_result["zero_shot"]["chance"]


def test_evaluate_zero_shot_beats_untrained_model(multi_result, multi_label, tmp_path):
    from dejavu.models import create_model

    torch.manual_seed(0)
    path = tmp_path / "untrained.pt"
    torch.save(create_model("dejavu-tiny-vit").model.state_dict(), path)
    untrained = evaluate_checkpoint(
        path, multi_label, model="dejavu-tiny-vit", device="cpu", progress=False
    )
    assert multi_result["zero_shot"]["value"] > untrained["zero_shot"]["value"]


def test_evaluate_multi_label_uses_objects(multi_result):
    assert multi_result["task"] == "multi-label"
    assert multi_result["metric"] == "mean_average_precision"
    assert multi_result["classes"] == sorted([*COLOURS, *SHAPES])


def test_evaluate_chance_is_mean_prevalence(multi_result, multi_label):
    rows = list(csv.DictReader(multi_label.open()))
    labels = [set(json.loads(row["objects"])) for row in rows]
    classes = multi_result["classes"]
    prevalence = [sum(c in ls for ls in labels) / len(rows) for c in classes]
    expected = sum(prevalence) / len(prevalence)
    assert multi_result["zero_shot"]["chance"] == pytest.approx(expected)


def test_evaluate_linear_probe_holds_out_a_fifth(multi_result):
    probe = multi_result["linear_probe"]
    assert probe["records"] == 10
    assert probe["train_records"] == 40


def test_evaluate_linear_probe_beats_chance(multi_result):
    probe = multi_result["linear_probe"]
    assert probe["value"] > probe["chance"]


def test_evaluate_single_label_scores_accuracy(trained, single_label):
    result = evaluate_checkpoint(trained, single_label, device="cpu", progress=False)
    assert result["task"] == "single-label"
    assert result["metric"] == "accuracy"
    assert result["zero_shot"]["value"] > result["zero_shot"]["chance"]


def test_evaluate_same_seed_same_result(trained, multi_label, multi_result):
    again = evaluate_checkpoint(trained, multi_label, device="cpu", progress=False)
    assert again["linear_probe"] == multi_result["linear_probe"]
    assert again["zero_shot"] == multi_result["zero_shot"]


def test_evaluate_rejects_manifest_without_labels(trained, tmp_path):
    data = write_shapes(tmp_path, 10, seed=3, columns=["id", "image", "caption"])
    with pytest.raises(InputError, match="neither a 'label' nor an 'objects'"):
        evaluate_checkpoint(trained, data, device="cpu", progress=False)


def test_evaluate_rejects_template_without_slot(trained, multi_label):
    with pytest.raises(InputError, match="template"):
        evaluate_checkpoint(trained, multi_label, templates=["a photo"])


def test_cli_evaluate_prints_json(trained, multi_label, tmp_path):
    out = tmp_path / "utility.json"
    args = ["evaluate", "--checkpoint", str(trained), "--data", str(multi_label)]
    args += ["--device", "cpu", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["zero_shot"] == json.loads(out.read_text())["zero_shot"]
