"""Tests of text randomization and CLIP training on a few dozen tiny images."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from dejavu.cli import main
from dejavu.errors import InputError, ModelLoadError, OutputDirError
from dejavu.textaug import MASK_WORD, TextRandomizer
from dejavu.train import train_clip

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (230, 210, 20),
}
SHAPES = ("square", "circle")


def write_shapes(folder: Path, n: int, *, seed: int = 0, extra=None) -> Path:
    """Write ``n`` 64 px images of one coloured shape each, and a CSV manifest."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
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
        name = f"images/{i}.png"
        image.save(folder / name)
        row = {
            "id": f"shape-{i}",
            "image": name,
            "caption": f"a {colour} {shape} on a white background",
            "objects": json.dumps([colour, shape]),
        }
        row.update((extra or {}).get(i, {}))
        rows.append(row)
    fields = list(rows[0]) + sorted({key for row in rows for key in row} - set(rows[0]))
    path = folder / "data.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """A manifest of 32 shape images."""
    return write_shapes(tmp_path_factory.mktemp("shapes"), 32)


def _train(data, out, **kwargs):
    settings = {
        "epochs": 2,
        "batch_size": 16,
        "warmup": 2,
        "device": "cpu",
        # One thread is much faster than two when other jobs share the cores, and
        # barely slower on idle ones for a model this small.
        "threads": 1,
        "progress": False,
    }
    settings.update(kwargs)
    return train_clip(data, out, **settings)


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").open()]


# Text randomization


def test_text_randomizer_rate_zero_keeps_caption():
    randomize = TextRandomizer(rate=0.0)
    caption = "a red bus  next to a man"
    assert randomize(caption, np.random.default_rng(0)) == caption


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.6])
def test_text_randomizer_drop_rate_matches_rate(rate):
    words = [f"w{i}" for i in range(40)]
    rng = np.random.default_rng(1)
    kept = TextRandomizer(rate=rate).apply([" ".join(words)] * 500, rng)
    dropped = 1 - sum(len(c.split()) for c in kept) / (40 * 500)
    # 20,000 Bernoulli draws: the standard error is below 0.0035.
    assert abs(dropped - rate) < 0.02


def test_text_randomizer_mask_mode_replaces_words():
    caption = " ".join(f"w{i}" for i in range(40))
    masked = TextRandomizer(rate=0.3, mode="mask").apply(
        [caption] * 500, np.random.default_rng(2)
    )
    words = [word for c in masked for word in c.split()]
    assert len(words) == 40 * 500
    assert abs(words.count(MASK_WORD) / len(words) - 0.3) < 0.02


def test_text_randomizer_same_seed_same_output():
    captions = ["a red bus next to a man and a dog"] * 50
    randomize = TextRandomizer(rate=0.4)
    first = randomize.apply(captions, np.random.default_rng(7))
    second = randomize.apply(captions, np.random.default_rng(7))
    assert first == second


def test_text_randomizer_other_seed_other_output():
    captions = ["a red bus next to a man and a dog"] * 50
    randomize = TextRandomizer(rate=0.4)
    first = randomize.apply(captions, np.random.default_rng(7))
    second = randomize.apply(captions, np.random.default_rng(8))
    assert first != second


@pytest.mark.parametrize("mode", ["drop", "mask"])
def test_text_randomizer_keeps_one_word(mode):
    randomize = TextRandomizer(rate=0.99, mode=mode)
    out = randomize.apply(["a red bus", "dog"] * 200, np.random.default_rng(3))
    kept = [[w for w in c.split() if w != MASK_WORD] for c in out]
    assert min(len(words) for words in kept) == 1


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_text_randomizer_rejects_rate_outside_range(rate):
    with pytest.raises(InputError, match="outside"):
        TextRandomizer(rate=rate)


# Training. Module fixtures train once and several tests read the result.


@pytest.fixture(scope="module")
def full_run(shapes, tmp_path_factory) -> Path:
    """A 3-epoch run keeping epochs 2 and 3, with text randomization."""
    out = tmp_path_factory.mktemp("full") / "run"
    _train(shapes, out, epochs=3, save_every=2, text_mask_rate=0.25, seed=3)
    return out


@pytest.fixture(scope="module")
def one_epoch(shapes, tmp_path_factory) -> Path:
    """The final checkpoint of a 1-epoch run with default settings."""
    return _train(shapes, tmp_path_factory.mktemp("one") / "run", epochs=1)


def test_train_loss_decreases(full_run):
    losses = [row["loss"] for row in _read_log(full_run)]
    assert losses[-1] < losses[0]


def test_train_log_has_one_row_per_epoch(full_run):
    rows = _read_log(full_run)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert set(rows[0]) == {"epoch", "loss", "lr", "seconds", "images_per_second"}


def test_train_checkpoint_loads_weights_only(full_run):
    path = full_run / "checkpoints" / "epoch_3.pt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 3
    assert checkpoint["name"] == "run"
    assert checkpoint["model_name"] == "dejavu-tiny-vit"
    assert checkpoint["model_config"]["vision_cfg"]["image_size"] == 64
    assert checkpoint["tokenizer"] == {"context_length": 32}
    assert isinstance(checkpoint["rng"]["torch"], torch.Tensor)
    assert "state" in checkpoint["optimizer"]


def test_train_checkpoint_records_metadata(full_run):
    path = full_run / "checkpoints" / "epoch_3.pt"
    meta = torch.load(path, map_location="cpu", weights_only=True)["dejavu"]
    assert meta["text_mask_rate"] == 0.25
    assert meta["text_mask_mode"] == "drop"
    assert meta["seed"] == 3
    assert meta["epochs"] == 3
    assert meta["batch_size"] == 16
    assert len(meta["data_sha256"]) == 64
    assert "torch" in meta["versions"]


def test_train_keeps_last_and_save_every(full_run):
    kept = sorted(p.name for p in (full_run / "checkpoints").iterdir())
    assert kept == ["epoch_2.pt", "epoch_3.pt"]


def test_train_checkpoint_loads_with_load_clip(one_epoch):
    from dejavu.models import load_clip

    encoder = load_clip(one_epoch, device="cpu")
    embeddings = encoder.encode_texts(["a red square", "a blue circle"])
    assert embeddings.shape == (2, 128)


def test_train_same_seed_same_weights(shapes, one_epoch, tmp_path):
    again = _train(shapes, tmp_path / "run", epochs=1)
    assert _same_weights(_weights(one_epoch), _weights(again))


def test_train_other_seed_other_weights(shapes, one_epoch, tmp_path):
    other = _train(shapes, tmp_path / "run", epochs=1, seed=1)
    assert not _same_weights(_weights(one_epoch), _weights(other))


def test_train_resume_equals_uninterrupted(shapes, full_run, tmp_path):
    resumed = _train(
        shapes,
        tmp_path / "resumed",
        epochs=3,
        save_every=2,
        text_mask_rate=0.25,
        seed=3,
        resume=full_run / "checkpoints" / "epoch_2.pt",
    )
    full = full_run / "checkpoints" / "epoch_3.pt"
    assert _same_weights(_weights(full), _weights(resumed))


def test_train_rerun_resumes_from_last_checkpoint(shapes, full_run, tmp_path):
    shutil.copytree(full_run, tmp_path / "cut")
    (tmp_path / "cut" / "checkpoints" / "epoch_3.pt").unlink()
    resumed = _train(
        shapes, tmp_path / "cut", epochs=3, save_every=2, text_mask_rate=0.25, seed=3
    )
    full = full_run / "checkpoints" / "epoch_3.pt"
    assert _same_weights(_weights(full), _weights(resumed))
    assert [row["epoch"] for row in _read_log(tmp_path / "cut")] == [1, 2, 3]


def test_train_rerun_after_finish_trains_nothing(shapes, one_epoch):
    written = one_epoch.stat().st_mtime_ns
    again = _train(shapes, one_epoch.parent.parent, epochs=1)
    assert again == one_epoch
    assert again.stat().st_mtime_ns == written


def test_train_accum_freq_matches_large_batch(shapes, one_epoch, tmp_path):
    # Pooling two batches of 8 into one contrastive batch gives the gradient of one
    # batch of 16, up to float rounding. AdamW's two steps move weights by up to
    # 1.5e-3 (learning rates 5e-4 and 1e-3), so 1e-4 is well below a wrong gradient.
    pooled = _train(shapes, tmp_path / "run", epochs=1, batch_size=8, accum_freq=2)
    large, pooled = _weights(one_epoch), _weights(pooled)
    differences = [float((large[k] - pooled[k]).abs().max()) for k in large]
    assert max(differences) < 1e-4


def test_train_repeats_column_repeats_records(tmp_path):
    extra = {0: {"repeats": 5}, 1: {"repeats": 3}}
    data = write_shapes(tmp_path / "data", 16, extra=extra)
    path = _train(data, tmp_path / "run", epochs=1, batch_size=8)
    meta = torch.load(path, map_location="cpu", weights_only=True)["dejavu"]
    assert meta["records"] == 16
    assert meta["samples_per_epoch"] == 16 + 4 + 2


def test_train_rejects_bad_repeats(tmp_path):
    data = write_shapes(tmp_path / "data", 16, extra={2: {"repeats": "0"}})
    with pytest.raises(InputError, match="shape-2"):
        _train(data, tmp_path / "run", batch_size=8)


# Bad input: each is rejected before a checkpoint is written.


def _no_checkpoint(out: Path) -> bool:
    return not list(out.glob("checkpoints/*.pt"))


def test_train_rejects_unknown_model(shapes, tmp_path):
    with pytest.raises(ModelLoadError, match="no-such-model"):
        _train(shapes, tmp_path / "run", model="no-such-model")
    assert _no_checkpoint(tmp_path / "run")


def test_train_rejects_manifest_without_captions(tmp_path):
    data = write_shapes(tmp_path / "data", 16)
    frame = [row for row in csv.DictReader(data.open())]
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "image", "objects"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("id", "image", "objects")} for r in frame)
    with pytest.raises(InputError, match="caption"):
        _train(data, tmp_path / "run", batch_size=8)
    assert _no_checkpoint(tmp_path / "run")


@pytest.mark.parametrize("rate", [1.0, -0.2])
def test_train_rejects_mask_rate_outside_range(shapes, tmp_path, rate):
    with pytest.raises(InputError, match="outside"):
        _train(shapes, tmp_path / "run", text_mask_rate=rate)
    assert _no_checkpoint(tmp_path / "run")


def test_train_rejects_batch_larger_than_data(shapes, tmp_path):
    with pytest.raises(InputError, match="larger than the 32 samples"):
        _train(shapes, tmp_path / "run", batch_size=33)
    assert _no_checkpoint(tmp_path / "run")


def test_train_rejects_unwritable_output(shapes, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputDirError):
        _train(shapes, blocker / "run")


def test_train_rejects_resume_from_other_architecture(shapes, tmp_path):
    from dejavu.models import create_model

    other = create_model("dejavu-tiny-resnet")
    path = tmp_path / "epoch_1.pt"
    checkpoint = {
        "epoch": 1,
        "name": "resnet",
        "state_dict": other.model.state_dict(),
        "model_name": other.model_name,
        "model_config": other.model_config,
    }
    torch.save(checkpoint, path)
    with pytest.raises(ModelLoadError, match="dejavu-tiny-resnet"):
        _train(shapes, tmp_path / "run", resume=path)
    assert _no_checkpoint(tmp_path / "run")


def test_train_rejects_resume_state_dict_of_other_shape(shapes, tmp_path):
    # A checkpoint from open_clip's trainer has no model config; shapes decide.
    from dejavu.models import create_model

    other = create_model("dejavu-tiny-resnet").model.state_dict()
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "name": "x", "state_dict": other}, path)
    with pytest.raises(ModelLoadError, match="does not fit"):
        _train(shapes, tmp_path / "run", resume=path)
    assert _no_checkpoint(tmp_path / "run")


def test_train_restores_thread_count(shapes, one_epoch):
    before = torch.get_num_threads()
    _train(shapes, one_epoch.parent.parent, epochs=1, threads=before + 1)
    assert torch.get_num_threads() == before


def test_train_rejects_folder_with_other_settings(shapes, one_epoch):
    with pytest.raises(OutputDirError, match="different settings"):
        _train(shapes, one_epoch.parent.parent, epochs=1, lr=5e-4)


# Command line


def test_cli_train_writes_checkpoint(shapes, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(shapes), "--out", str(out), "--epochs", "1"]
    args += ["--batch-size", "16", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "epoch_1.pt").is_file()


def test_cli_train_rejects_bad_mask_rate(shapes, tmp_path):
    args = ["train", "--data", str(shapes), "--out", str(tmp_path / "run")]
    args += ["--epochs", "1", "--text-mask-rate", "1", "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "outside [0, 1)" in result.output
