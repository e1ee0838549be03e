"""Tests for dejavu.models: tiny open_clip models saved to disk in every format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from dejavu import models
from dejavu._io import sha256_file
from dejavu.errors import ModelLoadError

REPO_ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ["a cow and a sheep on a farm", "a bus in the street", ""]


class _NotATensor:
    """A class that torch.load(weights_only=True) must reject."""

    def __init__(self):
        self.value = 1


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(80, 70), (64, 64), (50, 90)]
    return [
        Image.fromarray(rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8))
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    created = models.create_model("dejavu-tiny-vit")
    encoder = models.ClipEncoder(
        created, device=torch.device("cpu"), source="memory", sha256=None
    )
    return {
        "created": created,
        "state_dict": {k: v.clone() for k, v in created.model.state_dict().items()},
        "images": encoder.encode_images(_images()),
        "texts": encoder.encode_texts(CAPTIONS),
    }


@pytest.fixture(scope="module")
def checkpoints(tiny_vit, tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    created, state_dict = tiny_vit["created"], tiny_vit["state_dict"]
    trainer = {"epoch": 3, "name": "run", "state_dict": state_dict, "optimizer": {}}
    paths = {
        "trainer": folder / "trainer.pt",
        "module": folder / "module.pt",
        "bare": folder / "bare.pt",
        "dejavu": folder / "dejavu.pt",
    }
    torch.save(trainer, paths["trainer"])
    prefixed = {f"module.{k}": v for k, v in state_dict.items()}
    torch.save({**trainer, "state_dict": prefixed}, paths["module"])
    torch.save(state_dict, paths["bare"])
    torch.save(
        {
            **trainer,
            "model_name": created.model_name,
            "model_config": created.model_config,
            "tokenizer": {"context_length": created.context_length},
            "dejavu": {"seed": 0, "epochs": 3},
        },
        paths["dejavu"],
    )
    return paths


# Configs


def test_packaged_configs_registered_with_open_clip():
    for name in ("dejavu-tiny-vit", "dejavu-tiny-resnet"):
        assert name in open_clip.list_models()


def test_packaged_configs_match_user_copies():
    for path in sorted((REPO_ROOT / "dejavu" / "model_configs").glob("*.json")):
        copy = REPO_ROOT / "configs" / "models" / path.name
        assert json.loads(copy.read_text()) == json.loads(path.read_text()), path.name


def test_resolve_model_config_packaged_name():
    name, config = models.resolve_model_config("dejavu-tiny-vit")
    assert name == "dejavu-tiny-vit"
    assert config["embed_dim"] == 128


def test_resolve_model_config_open_clip_name():
    name, config = models.resolve_model_config("ViT-B-32")
    assert config["vision_cfg"]["patch_size"] == 32


def test_resolve_model_config_bare_json_file(tmp_path):
    _, packaged = models.resolve_model_config("dejavu-tiny-vit")
    path = tmp_path / "my-model.json"
    path.write_text(json.dumps(packaged))
    name, config = models.resolve_model_config(path)
    assert name == "my-model"
    assert config == packaged


def test_resolve_model_config_open_clip_config_json(tmp_path):
    _, packaged = models.resolve_model_config("dejavu-tiny-resnet")
    folder = tmp_path / "resnet-run"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": packaged}))
    _, from_file = models.resolve_model_config(folder / "open_clip_config.json")
    _, from_local_dir = models.resolve_model_config(f"local-dir:{folder}")
    assert from_file == packaged
    assert from_local_dir == packaged


def test_resolve_model_config_unknown_name():
    with pytest.raises(ModelLoadError, match="list_models") as info:
        models.resolve_model_config("ViT-B-3")
    assert "ViT-B-32" in str(info.value)


def test_resolve_model_config_incomplete_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ModelLoadError, match="vision_cfg"):
        models.resolve_model_config(path)


# Creating models


def test_create_model_transforms_and_tokenizer():
    created = models.create_model("dejavu-tiny-resnet")
    image = _images(1)[0]
    assert created.preprocess_train(image).shape == (3, 64, 64)
    assert created.preprocess_val(image).shape == (3, 64, 64)
    assert created.tokenizer(CAPTIONS).shape == (3, 32)
    assert created.model_name == "dejavu-tiny-resnet"


def test_create_model_from_json_file(tmp_path):
    _, config = models.resolve_model_config("dejavu-tiny-vit")
    config["embed_dim"] = 64
    path = tmp_path / "narrow.json"
    path.write_text(json.dumps(config))
    created = models.create_model(path)
    assert created.model_name == "narrow"
    assert created.model.text_projection.shape == (128, 64)


def test_create_model_is_open_clip_create_model():
    torch.manual_seed(1)
    ours = models.create_model("dejavu-tiny-vit").model.state_dict()
    torch.manual_seed(1)
    theirs = open_clip.create_model("dejavu-tiny-vit").state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


# Loading checkpoints


@pytest.mark.parametrize("form", ["trainer", "module", "bare", "dejavu"])
def test_load_clip_checkpoint_forms_agree(form, checkpoints, tiny_vit):
    model = None if form == "dejavu" else "dejavu-tiny-vit"
    encoder = models.load_clip(checkpoints[form], model=model, device="cpu")
    assert np.array_equal(encoder.encode_images(_images()), tiny_vit["images"])
    assert np.array_equal(encoder.encode_texts(CAPTIONS), tiny_vit["texts"])


def test_load_clip_dejavu_checkpoint_records_source(checkpoints):
    encoder = models.load_clip(checkpoints["dejavu"], device="cpu")
    assert encoder.model_name == "dejavu-tiny-vit"
    assert encoder.sha256 == sha256_file(checkpoints["dejavu"])
    assert encoder.source == str(checkpoints["dejavu"])
    assert encoder.embed_dim == 128
    assert encoder.n_parameters == 9_093_761


def test_load_clip_model_in_eval_mode(checkpoints):
    encoder = models.load_clip(checkpoints["dejavu"], device="cpu")
    assert not encoder.model.training


def test_load_clip_embeddings_unit_norm(checkpoints):
    encoder = models.load_clip(checkpoints["dejavu"], device="cpu")
    images = encoder.encode_images(_images(3))
    texts = encoder.encode_texts(CAPTIONS[:2])
    assert images.shape == (3, 128)
    assert texts.shape == (2, 128)
    assert images.dtype == np.float32
    assert np.allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)


def test_load_clip_empty_batches(checkpoints):
    encoder = models.load_clip(checkpoints["dejavu"], device="cpu")
    assert encoder.encode_images([]).shape == (0, 128)
    assert encoder.encode_texts([]).shape == (0, 128)


@pytest.mark.parametrize("form", ["trainer", "module", "bare"])
def test_load_clip_infers_architecture(form, checkpoints, tiny_vit):
    encoder = models.load_clip(checkpoints[form], device="cpu")
    assert encoder.model_name == "dejavu-tiny-vit"
    assert np.array_equal(encoder.encode_texts(CAPTIONS), tiny_vit["texts"])


def test_infer_architecture_resnet():
    state_dict = open_clip.create_model("dejavu-tiny-resnet").state_dict()
    name, _ = models.infer_architecture(state_dict)
    assert name == "dejavu-tiny-resnet"


def test_infer_architecture_unknown_shapes_asks_for_model():
    state_dict = {"text_projection": torch.zeros(7, 5), "other": torch.zeros(2)}
    with pytest.raises(ModelLoadError, match="--model"):
        models.infer_architecture(state_dict, source="weird.pt")


def test_load_clip_safetensors(tmp_path, tiny_vit):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file(tiny_vit["state_dict"], str(path))
    encoder = models.load_clip(path, device="cpu")
    assert np.array_equal(encoder.encode_images(_images()), tiny_vit["images"])


def test_load_clip_local_dir(tmp_path, tiny_vit):
    folder = tmp_path / "exported"
    folder.mkdir()
    config = {"model_cfg": tiny_vit["created"].model_config}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(tiny_vit["state_dict"], folder / "open_clip_pytorch_model.bin")
    encoder = models.load_clip(f"local-dir:{folder}", device="cpu")
    assert np.array_equal(encoder.encode_texts(CAPTIONS), tiny_vit["texts"])


def test_checkpoint_metadata_dejavu_keys(checkpoints):
    metadata = models.checkpoint_metadata(checkpoints["dejavu"])
    assert metadata["tokenizer"] == {"context_length": 32}
    assert metadata["dejavu"]["epochs"] == 3
    assert "optimizer" not in metadata


# Loading errors


def test_load_clip_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ModelLoadError, match="noise.pt"):
        models.load_clip(path, model="dejavu-tiny-vit", device="cpu")


def test_load_clip_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(ModelLoadError, match="notes.txt"):
        models.load_clip(path, device="cpu")


def test_load_clip_rejects_unsafe_pickle(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {}, "extra": _NotATensor()}, path)
    with pytest.raises(ModelLoadError, match="weights_only=True") as info:
        models.load_clip(path, model="dejavu-tiny-vit", device="cpu")
    assert "unsafe.pt" in str(info.value)


def test_load_clip_rejects_non_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ModelLoadError, match="not a model checkpoint"):
        models.load_clip(path, device="cpu")


def test_load_clip_architecture_mismatch_names_keys(checkpoints):
    with pytest.raises(ModelLoadError) as info:
        models.load_clip(checkpoints["bare"], model="dejavu-tiny-resnet", device="cpu")
    message = str(info.value)
    assert "bare.pt" in message
    assert "visual.conv1.weight: checkpoint [192, 3, 16, 16] vs model [8, 3, 3, 3]" in (
        message
    )
    assert "missing from the checkpoint" in message
    assert "visual.class_embedding: checkpoint [192]" in message


def test_load_clip_unknown_model_name(checkpoints):
    with pytest.raises(ModelLoadError, match="unknown model"):
        models.load_clip(checkpoints["bare"], model="no-such-model", device="cpu")


def test_load_clip_missing_file():
    with pytest.raises(ModelLoadError, match="not an existing checkpoint"):
        models.load_clip("/nonexistent/model.pt", device="cpu")


# Pretrained names


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_load_clip_uncached_tag_offline(empty_caches):
    with pytest.raises(ModelLoadError, match="not in the local cache"):
        models.load_clip("ViT-B-32:laion2b_s34b_b79k", device="cpu")


def test_load_clip_unknown_pretrained_tag(empty_caches):
    with pytest.raises(ModelLoadError, match="laion2b_s34b_b79k"):
        models.load_clip("ViT-B-32:no_such_tag", device="cpu")


def test_load_clip_uncached_hf_hub_offline(empty_caches):
    with pytest.raises(ModelLoadError, match="not in the local cache"):
        models.load_clip("hf-hub:nobody/nothing", device="cpu")


def test_load_clip_hf_hub_from_cache(empty_caches, tiny_vit):
    # The layout huggingface_hub writes: refs/main names the snapshot folder.
    repo = empty_caches / "hf" / "hub" / "models--someone--tiny"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    config = {"model_cfg": tiny_vit["created"].model_config}
    (snapshot / "open_clip_config.json").write_text(json.dumps(config))
    torch.save(tiny_vit["state_dict"], snapshot / "open_clip_pytorch_model.bin")
    encoder = models.load_clip("hf-hub:someone/tiny", device="cpu")
    assert encoder.model_name == "hf-hub:someone/tiny"
    assert np.array_equal(encoder.encode_texts(CAPTIONS), tiny_vit["texts"])


# Text-only encoder


@pytest.fixture(scope="module")
def text_encoder():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return models.load_text_encoder(device="cpu")


def test_text_encoder_default_loads_offline(text_encoder):
    assert text_encoder.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert text_encoder.embed_dim == 384


def test_text_encoder_unit_norm(text_encoder):
    vectors = text_encoder.encode_texts(CAPTIONS)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, atol=1e-5)


def test_text_encoder_similar_captions_closer(text_encoder):
    a, b, c = text_encoder.encode_texts(
        ["a cow grazing in a field", "a cow on a farm", "a laptop on an office desk"]
    )
    assert a @ b > a @ c


def test_text_encoder_empty_batch(text_encoder):
    assert text_encoder.encode_texts([]).shape == (0, 384)


def test_text_encoder_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        models.load_text_encoder(tmp_path / "absent", device="cpu")


def test_text_encoder_folder_without_model(tmp_path):
    with pytest.raises(ModelLoadError, match="modules.json"):
        models.load_text_encoder(tmp_path, device="cpu")
