"""Contrastive training of CLIP models, with text randomization.

:func:`train_clip` trains an open_clip architecture on a manifest of image-caption
records the way open_clip's own trainer does:

- the symmetric contrastive loss (``open_clip.ClipLoss``);
- AdamW, without weight decay on gains, biases and the logit scale;
- a cosine learning-rate schedule with linear warmup, counted in optimizer steps;
- the logit scale clamped to ln(100) after every step.

Images are decoded a batch at a time and augmented with the model's training
transform. Each caption can be randomized every time it is loaded
(:class:`dejavu.textaug.TextRandomizer`).

The output folder holds::

    OUT/
      .dejavu-run.json          command and settings, used to resume reruns
      train_log.jsonl           one line per finished epoch
      checkpoints/epoch_E.pt    open_clip trainer format plus dejavu metadata

A checkpoint is a dict with open_clip's trainer keys ``epoch``, ``name``,
``state_dict`` and ``optimizer``, and ``model_name``, ``model_config`` (the open_clip
model config), ``tokenizer`` (``{"context_length": ...}``), ``dejavu`` (training
metadata), ``scheduler`` (the step count) and ``rng`` (generator states as tensors),
so that ``torch.load(..., weights_only=True)`` reads every part.

Randomness: the model is initialised from ``torch.manual_seed(seed)``. The order of
the samples and the caption masks of epoch ``e`` come from a NumPy generator seeded
with ``(seed, e)``. Augmentation draws from torch's global generator, whose state is
saved in every checkpoint and restored on resume. On the CPU, with the same number of
torch threads, a resumed run therefore ends with exactly the weights of an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import dejavu
from dejavu._io import (
    atomic_path,
    package_versions,
    prepare_run_dir,
    sha256_file,
    stable_hash,
    write_text,
)
from dejavu.errors import InputError, ModelLoadError, OutputDirError
from dejavu.textaug import TextRandomizer, check_mask_settings

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LOG_NAME = "train_log.jsonl"
DEFAULT_MODEL = "dejavu-tiny-vit"

# Defaults measured on 64 px scenes with the tiny ViT (see docs/training.md): they
# make it fit 500 records within about 40 epochs.
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 1e-3
DEFAULT_WARMUP = 50
DEFAULT_WEIGHT_DECAY = 0.1

# open_clip's trainer clamps the learned temperature at 100.
_MAX_LOGIT_SCALE = math.log(100)
_CHECKPOINT_RE = re.compile(r"^epoch_(\d+)\.pt$")


@dataclass(frozen=True)
class _Schedule:
    """Cosine learning rate with linear warmup, as a function of the optimizer step."""

    base_lr: float
    warmup: int
    total_steps: int

    def lr(self, step: int) -> float:
        if step < self.warmup:
            return self.base_lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total_steps - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * progress)) * self.base_lr


def train_clip(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str = DEFAULT_MODEL,
    epochs: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    warmup: int = DEFAULT_WARMUP,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    text_mask_rate: float = 0.0,
    text_mask_mode: str = "drop",
    seed: int = 0,
    device: str = "auto",
    accum_freq: int = 1,
    save_every: int | None = None,
    resume: str | os.PathLike | None = None,
    workers: int = 0,
    threads: int | None = None,
    skip_bad_records: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Train a CLIP model on a manifest of image-caption records.

    Parameters
    ----------
    data : path-like
        Manifest of the training set; needs ``id``, ``image`` and ``caption``. An
        optional integer ``repeats`` column makes a record appear that many times per
        epoch (a missing value counts as 1).
    out : path-like
        Output folder. A rerun with the same settings resumes from its last
        checkpoint; a folder written otherwise is rejected unless ``overwrite``.
    model : str, default="dejavu-tiny-vit"
        Packaged config name, open_clip model name, or path to a model config JSON.
    epochs : int
        Number of passes over the data.
    batch_size : int, default=64
        Records per forward pass.
    lr : float, default=1e-3
        Peak learning rate of AdamW.
    warmup : int, default=50
        Optimizer steps of linear warmup before the cosine decay.
    weight_decay : float, default=0.1
        AdamW weight decay for weight matrices and embeddings; gains, biases and the
        logit scale get none.
    text_mask_rate : float, default=0.0
        Probability ρ in [0, 1) of dropping (or masking) each caption word each time
        the caption is loaded.
    text_mask_mode : {"drop", "mask"}, default="drop"
        Drop the chosen words, or replace each by a placeholder word.
    seed : int, default=0
        Seed of the model initialisation, data order, caption masks and
        augmentation.
    device : str, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``. On CUDA the forward pass runs in bfloat16 autocast (float16
        with loss scaling on GPUs without bfloat16); on the CPU in float32.
    accum_freq : int, default=1
        Batches whose features are pooled into one contrastive batch of
        ``batch_size * accum_freq`` records per optimizer step, as open_clip's
        ``--accum-freq`` does.
    save_every : int, optional
        Also keep the checkpoints of epochs that are multiples of this number. The
        last epoch's checkpoint is always kept; other ones are deleted.
    resume : path-like, optional
        Checkpoint to continue from (its weights, optimizer, epoch and generator
        states). Without it, training continues from the newest checkpoint in
        ``out`` when the folder was written with the same settings.
    workers : int, default=0
        Worker processes that decode images. 0 decodes in the training process.
    threads : int, optional
        CPU threads for torch while training (``torch.set_num_threads``), restored
        afterwards. Default: torch's setting, one per core. On a machine shared
        with other jobs, 1 can be several times faster (see docs/benchmarks.md).
    skip_bad_records : bool, default=False
        Leave out records with missing or undecodable images instead of raising.
    overwrite : bool, default=False
        Empty an output folder written by another command or with other settings.
    progress : bool, default=True
        Show a progress bar with the loss.

    Returns
    -------
    pathlib.Path
        The final checkpoint, ``out/checkpoints/epoch_{epochs}.pt``.

    Raises
    ------
    InputError
        If an option is out of range, the manifest lacks captions or has bad
        records, or the batch is larger than the data.
    ModelLoadError
        If the model name is unknown or ``resume`` cannot be loaded into it.
    OutputDirError
        If ``out`` cannot be used or written.
    """
    _check_numbers(
        epochs, batch_size, lr, warmup, weight_decay, accum_freq, save_every, threads
    )
    check_mask_settings(text_mask_rate, text_mask_mode)
    randomizer = TextRandomizer(text_mask_rate, text_mask_mode)
    torch_device = resolve_device(device)

    records = _read_training_set(data, skip_bad_records)
    samples = _expand_repeats(records)
    contrastive_batch = batch_size * accum_freq
    if contrastive_batch > len(samples):
        raise InputError(
            f"batch size {batch_size} x accum-freq {accum_freq} = {contrastive_batch} "
            f"is larger than the {len(samples)} samples per epoch of {records.path}; "
            f"use a batch size of at most {len(samples) // accum_freq}"
        )
    steps_per_epoch = len(samples) // contrastive_batch
    schedule = _Schedule(lr, warmup, steps_per_epoch * epochs)

    settings = {
        "data": str(Path(data).resolve()),
        "data_sha256": _data_sha256(records.path),
        "model": model,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "warmup": warmup,
        "weight_decay": weight_decay,
        "text_mask_rate": float(text_mask_rate),
        "text_mask_mode": text_mask_mode,
        "seed": seed,
        "device": torch_device.type,
        "accum_freq": accum_freq,
        "save_every": save_every,
        "skip_bad_records": skip_bad_records,
    }

    from dejavu.models import create_model

    torch.manual_seed(seed)
    created = create_model(model, device=torch_device)
    clip = created.model
    optimizer = _make_optimizer(clip, lr, weight_decay)
    scaler = _make_scaler(torch_device)

    # The explicit checkpoint is read before the output folder is prepared, because
    # preparing may empty the folder that contains it.
    start = None
    if resume is not None:
        start = _load_checkpoint(Path(resume), created)

    out = prepare_run_dir(out, "train", settings, overwrite=overwrite)
    ckpt_dir = out / CHECKPOINT_DIR
    if start is None:
        last = _last_checkpoint(ckpt_dir)
        if last is not None:
            start = _load_checkpoint(last, created)
            log.info("resuming from %s (epoch %d)", last, start["epoch"])
    start_epoch = 0
    if start is not None:
        start_epoch = _restore(start, clip, optimizer, scaler, epochs, resume)
    if start_epoch == epochs:
        final = ckpt_dir / f"epoch_{epochs}.pt"
        if final.exists():
            log.info("%s already contains the final checkpoint %s", out, final)
            return final

    metadata = {
        **settings,
        "version": dejavu.__version__,
        "records": len(records.frame),
        "samples_per_epoch": len(samples),
        "skipped_records": len(records.skipped),
        "precision": _precision_name(torch_device),
        "versions": package_versions(),
    }
    context = _TrainingContext(
        created=created,
        optimizer=optimizer,
        scaler=scaler,
        schedule=schedule,
        device=torch_device,
        batch_size=batch_size,
        accum_freq=accum_freq,
        steps_per_epoch=steps_per_epoch,
        workers=workers,
    )
    log_rows = _read_log(out / LOG_NAME, start_epoch)

    with (
        _deterministic(torch_device),
        _cpu_threads(threads),
        _progress_bar(
            progress, schedule.total_steps, start_epoch * steps_per_epoch
        ) as bar,
    ):
        for epoch in range(start_epoch, epochs):
            # Sample order and caption masks depend only on (seed, epoch).
            rng = np.random.default_rng([seed, epoch])
            order = rng.permutation(samples)[: steps_per_epoch * contrastive_batch]
            captions = randomizer.apply(records.frame["caption"].iloc[order], rng)
            images = records.frame["image"].iloc[order].tolist()

            began = time.perf_counter()
            loss = _train_epoch(context, epoch, images, captions, bar)
            seconds = time.perf_counter() - began

            completed = epoch + 1
            path = ckpt_dir / f"epoch_{completed}.pt"
            _save_checkpoint(path, context, completed, out.name, metadata)
            _prune_checkpoints(ckpt_dir, completed, save_every)
            log_rows.append(
                {
                    "epoch": completed,
                    "loss": loss,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": round(seconds, 3),
                    "images_per_second": round(len(order) / seconds, 1),
                }
            )
            write_text(out / LOG_NAME, "".join(json.dumps(r) + "\n" for r in log_rows))
            log.info("epoch %d/%d: loss %.4f, %.1f s", completed, epochs, loss, seconds)
    return ckpt_dir / f"epoch_{epochs}.pt"


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto"`` into ``cuda`` when a GPU is available and ``cpu`` otherwise.

    Raises :class:`~dejavu.errors.InputError` for an invalid name or when CUDA is
    requested on a machine without it.
    """
    from dejavu import models

    try:
        resolved = models.resolve_device(device)
    except RuntimeError as err:
        raise InputError(
            f"device {device!r} is invalid; use auto, cpu, cuda or cuda:N"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available")
    return resolved


def _check_numbers(
    epochs, batch_size, lr, warmup, weight_decay, accum_freq, every, threads
):
    positive = {"epochs": epochs, "batch size": batch_size, "accum-freq": accum_freq}
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer of at least 1, got {value!r}")
    if every is not None and (not isinstance(every, int) or every < 1):
        raise InputError(f"save-every must be an integer of at least 1, got {every!r}")
    if not lr > 0:
        raise InputError(f"learning rate must be positive, got {lr!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise InputError(f"warmup must be a number of steps >= 0, got {warmup!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be an integer of at least 1, got {threads!r}")
    if not weight_decay >= 0:
        raise InputError(f"weight decay must be >= 0, got {weight_decay!r}")


def _read_training_set(data, skip_bad_records: bool):
    from dejavu.data.manifest import read_manifest

    records = read_manifest(
        data,
        set_name="training set",
        require=("id", "image", "caption"),
        skip_bad_records=skip_bad_records,
    )
    if records.frame.empty:
        raise InputError(f"training set {records.path} has no usable records")
    return records


def _expand_repeats(records) -> np.ndarray:
    """Return the row index of each sample of an epoch, rows repeated by ``repeats``."""
    frame = records.frame
    n = len(frame)
    if "repeats" not in frame.columns:
        return np.arange(n)
    counts = np.ones(n, dtype=np.int64)
    for i, (value, row_id) in enumerate(
        zip(frame["repeats"], frame["id"], strict=True)
    ):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, str) and not value.strip():
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not number.is_integer() or number < 1:
            raise InputError(
                f"training set {records.path}: record {row_id!r} has repeats "
                f"{value!r}; repeats must be a whole number of at least 1"
            )
        counts[i] = int(number)
    return np.repeat(np.arange(n), counts)


def _data_sha256(path: Path) -> str:
    """SHA-256 of a manifest file, or of the file hashes of a folder of shards."""
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return stable_hash({str(p.relative_to(path)): sha256_file(p) for p in files})


def _make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float):
    # Same grouping as open_clip's trainer: no decay on gains, biases, norms and the
    # temperature.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = (
            param.ndim < 2
            or "bn" in name
            or "ln" in name
            or "bias" in name
            or "logit_scale" in name
        )
        (no_decay if exclude else decay).append(param)
    return torch.optim.AdamW(
        [
            {"params": no_decay, "weight_decay": 0.0},
            {"params": decay, "weight_decay": weight_decay},
        ],
        lr=lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


# NOTE: the CUDA branches (autocast, loss scaling, CUDA generator states) have not
# been run by the tests, which train on the CPU only.
def _use_bfloat16(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def _precision_name(device: torch.device) -> str:
    if device.type != "cuda":
        return "fp32"
    return "amp_bf16" if _use_bfloat16(device) else "amp"


def _make_scaler(device: torch.device):
    if device.type == "cuda" and not _use_bfloat16(device):
        return torch.amp.GradScaler("cuda")
    return None


def _autocast(device: torch.device):
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if _use_bfloat16(device) else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@contextlib.contextmanager
def _cpu_threads(threads: int | None):
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _deterministic(device: torch.device):
    """Use deterministic kernels on the CPU while training, then restore the setting."""
    if device.type != "cpu":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, initial: int):
    bar = tqdm(
        total=total, initial=initial, disable=not enabled, unit="step", desc="train"
    )
    try:
        yield bar
    finally:
        bar.close()


@dataclass
class _TrainingContext:
    created: Any
    optimizer: torch.optim.Optimizer
    scaler: Any
    schedule: _Schedule
    device: torch.device
    batch_size: int
    accum_freq: int
    steps_per_epoch: int
    workers: int


class _CaptionedImages(torch.utils.data.Dataset):
    """The samples of one epoch, in training order, as (image tensor, caption)."""

    def __init__(self, images: Sequence[str], captions: Sequence[str], transform):
        self.images = images
        self.captions = captions
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from dejavu.data.manifest import open_image

        return self.transform(open_image(self.images[i])), self.captions[i]


def _collate(tokenizer: Callable) -> Callable:
    def collate(batch):
        images = torch.stack([image for image, _ in batch])  # (B, 3, H, W)
        texts = tokenizer([caption for _, caption in batch])  # (B, context_length)
        return images, texts

    return collate


def _batches(context: _TrainingContext, images, captions):
    dataset = _CaptionedImages(images, captions, context.created.preprocess_train)
    size = context.batch_size
    batch_sampler = [list(range(i, i + size)) for i in range(0, len(images), size)]
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=context.workers,
        collate_fn=_collate(context.created.tokenizer),
        pin_memory=context.device.type == "cuda",
    )


def _features(model, images, texts):
    """Run the model and return (image features, text features, logit scale)."""
    output = model(images, texts)
    if isinstance(output, dict):
        return output["image_features"], output["text_features"], output["logit_scale"]
    return output[0], output[1], output[2]


def _train_epoch(context: _TrainingContext, epoch: int, images, captions, bar) -> float:
    """Train one epoch and return the mean contrastive loss over its steps."""
    from open_clip import ClipLoss

    model = context.created.model
    model.train()
    clip_loss = ClipLoss()
    device = context.device
    losses = []
    pending = []  # the (images, texts) batches of the current optimizer step

    for i, (image_batch, text_batch) in enumerate(_batches(context, images, captions)):
        pending.append((image_batch.to(device), text_batch.to(device)))
        if len(pending) < context.accum_freq:
            continue
        step = epoch * context.steps_per_epoch + i // context.accum_freq
        for group in context.optimizer.param_groups:
            group["lr"] = context.schedule.lr(step)
        context.optimizer.zero_grad(set_to_none=True)

        if context.accum_freq == 1:
            with _autocast(device):
                loss = clip_loss(*_features(model, *pending[0]))
            _backward(loss, context.scaler)
            step_loss = loss.item()
        else:
            step_loss = _accumulated_backward(context, model, clip_loss, pending)

        if context.scaler is not None:
            context.scaler.step(context.optimizer)
            context.scaler.update()
        else:
            context.optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)

        pending = []
        losses.append(step_loss)
        bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{step_loss:.4f}")
    return float(np.mean(losses))


def _accumulated_backward(context, model, clip_loss, pending) -> float:
    """Backpropagate one contrastive batch made of several forward batches.

    As in open_clip's trainer: the features of every batch are first computed without
    gradients. Then each batch is run again with gradients, its fresh features are
    put in place of its cached ones, and the loss over the whole pooled batch is
    backpropagated, so the other batches serve as negatives for each one.
    """
    with torch.no_grad(), _autocast(context.device):
        cached = [_features(model, images, texts)[:2] for images, texts in pending]
    step_losses = []
    for j, (images, texts) in enumerate(pending):
        with _autocast(context.device):
            image_features, text_features, logit_scale = _features(model, images, texts)
            all_images = [f for f, _ in cached[:j]] + [image_features]
            all_images += [f for f, _ in cached[j + 1 :]]
            all_texts = [t for _, t in cached[:j]] + [text_features]
            all_texts += [t for _, t in cached[j + 1 :]]
            loss = clip_loss(torch.cat(all_images), torch.cat(all_texts), logit_scale)
        _backward(loss, context.scaler)
        step_losses.append(loss.item())
    return float(np.mean(step_losses))


def _backward(loss: torch.Tensor, scaler) -> None:
    if scaler is not None:
        scaler.scale(loss).backward()
    else:
        loss.backward()


def _save_checkpoint(path: Path, context, epoch: int, name: str, metadata) -> None:
    created = context.created
    text_cfg = created.model_config.get("text_cfg", {})
    context_length = getattr(
        created.tokenizer, "context_length", text_cfg.get("context_length", 77)
    )
    checkpoint = {
        "epoch": epoch,
        "name": name,
        "state_dict": created.model.state_dict(),
        "optimizer": context.optimizer.state_dict(),
        "model_name": created.model_name,
        "model_config": created.model_config,
        "tokenizer": {"context_length": int(context_length)},
        "dejavu": metadata,
        "scheduler": {
            "name": "cosine",
            "step": epoch * context.steps_per_epoch,
            "steps_per_epoch": context.steps_per_epoch,
            "total_steps": context.schedule.total_steps,
            "warmup": context.schedule.warmup,
            "base_lr": context.schedule.base_lr,
        },
        "rng": _rng_state(),
    }
    if context.scaler is not None:
        checkpoint["scaler"] = context.scaler.state_dict()
    try:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
    except OSError as err:
        raise OutputDirError(
            f"cannot write checkpoint {path}: {err.strerror or err}; check free space "
            "and permissions of the output folder"
        ) from err


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _last_checkpoint(ckpt_dir: Path) -> Path | None:
    epochs = _checkpoint_epochs(ckpt_dir)
    return ckpt_dir / f"epoch_{max(epochs)}.pt" if epochs else None


def _checkpoint_epochs(ckpt_dir: Path) -> list[int]:
    if not ckpt_dir.is_dir():
        return []
    found = (_CHECKPOINT_RE.match(p.name) for p in ckpt_dir.iterdir())
    return [int(m.group(1)) for m in found if m]


def _prune_checkpoints(ckpt_dir: Path, last: int, save_every: int | None) -> None:
    for epoch in _checkpoint_epochs(ckpt_dir):
        keep = epoch == last or (save_every is not None and epoch % save_every == 0)
        if not keep:
            (ckpt_dir / f"epoch_{epoch}.pt").unlink()


def _load_checkpoint(path: Path, created) -> dict:
    """Read a training checkpoint and check it fits the model being trained."""
    if not path.is_file():
        raise ModelLoadError(f"resume checkpoint {path} does not exist; check the path")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a bad file
        raise ModelLoadError(
            f"cannot read resume checkpoint {path}: {err}; give a checkpoint written "
            "by dejavu train or open_clip's trainer"
        ) from err

    required = {"epoch", "state_dict"}
    if not isinstance(checkpoint, dict) or not required <= checkpoint.keys():
        raise ModelLoadError(
            f"resume checkpoint {path} has no 'epoch' and 'state_dict'; give a "
            "training checkpoint (epoch_E.pt), not a bare state dict"
        )

    config = checkpoint.get("model_config")
    if config is not None and config != created.model_config:
        raise ModelLoadError(
            f"resume checkpoint {path} is a {checkpoint.get('model_name')!r} model "
            f"whose config differs from {created.model_name!r}; resume with the model "
            "it was trained as"
        )

    # open_clip's trainer checkpoints carry no config, so compare tensor shapes.
    state = {
        key.removeprefix("module."): value
        for key, value in checkpoint["state_dict"].items()
    }
    expected = created.model.state_dict()
    mismatched = [
        key
        for key in set(state) | set(expected)
        if key not in state
        or key not in expected
        or state[key].shape != expected[key].shape
    ]
    if mismatched:
        raise ModelLoadError(
            f"resume checkpoint {path} does not fit {created.model_name}: "
            f"{len(mismatched)} parameters differ (e.g. {sorted(mismatched)[0]}); "
            "resume with the model it was trained as"
        )

    checkpoint["state_dict"] = state
    checkpoint["path"] = str(path)
    return checkpoint


def _restore(checkpoint, model, optimizer, scaler, epochs: int, resume) -> int:
    """Load weights, optimizer and generator states; return the epoch to start at."""
    epoch = int(checkpoint["epoch"])
    if epoch > epochs or (resume is not None and epoch == epochs):
        raise InputError(
            f"resume checkpoint {checkpoint['path']} finished epoch {epoch}; ask for "
            f"more than {epoch} epochs to continue training it"
        )
    model.load_state_dict(checkpoint["state_dict"])
    if "optimizer" in checkpoint:
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as err:
            raise ModelLoadError(
                f"optimizer state of {checkpoint['path']} does not fit the model: {err}"
            ) from err
    else:
        log.warning(
            "%s has no optimizer state; AdamW starts afresh", checkpoint["path"]
        )
    if scaler is not None and "scaler" in checkpoint:
        scaler.load_state_dict(checkpoint["scaler"])
    rng = checkpoint.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return epoch


def _read_log(path: Path, up_to_epoch: int) -> list[dict]:
    """Read the epoch log, keeping only epochs the resumed run will not redo."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [row for row in rows if row.get("epoch", 0) <= up_to_epoch]


def train_clips(runs: Sequence[Mapping[str, Any]], *, jobs: int = 2) -> list[Path]:
    """Train several CLIP models, ``jobs`` at a time, each on one CPU thread.

    On a CPU machine this is much faster than training them one after another with
    torch's default threads: two threads per process stall each other whenever
    the machine is busy, while one thread per process does not. Results are the
    same as training each run alone with ``threads=1``.

    Parameters
    ----------
    runs : sequence of mapping
        Keyword arguments of :func:`train_clip` for each model, including ``data``
        and ``out``. ``threads`` is set to 1 and ``progress`` to False.
    jobs : int, default=2
        Models trained at once, in separate processes.

    Returns
    -------
    list of pathlib.Path
        The final checkpoint of each run, in order.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    runs = [{**run, "threads": 1, "progress": False} for run in runs]
    if jobs <= 1 or len(runs) <= 1:
        return [train_clip(**run) for run in runs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_train_clip_kwargs, run) for run in runs]
        return [future.result() for future in futures]


def _train_clip_kwargs(run: Mapping[str, Any]) -> Path:
    return train_clip(**run)
