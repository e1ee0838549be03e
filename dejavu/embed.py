"""Streamed, cached embedding of images and captions.

Embeddings are computed a batch at a time and written straight into a ``.npy`` file
opened as a memory map, so no stage holds all images in memory. Each cache entry is
named by a hash of the encoder's identity, the inputs' content (image content hashes
or the caption strings) and the package versions. A progress file next to the partial
array records how many rows are done; an interrupted run continues from there.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from dejavu._io import package_versions, stable_hash, write_json
from dejavu.data.manifest import open_image

log = logging.getLogger(__name__)


def encoder_identity(encoder) -> dict:
    """Return what identifies an encoder's outputs, for cache keys."""
    return {
        "source": str(getattr(encoder, "source", "")),
        "sha256": getattr(encoder, "sha256", None),
        "model_name": getattr(encoder, "model_name", None),
        "model_config": getattr(encoder, "model_config", None),
        "device": str(getattr(encoder, "device", "cpu")).split(":")[0],
    }


def embed_images(
    encoder,
    refs: Sequence[str],
    content_hashes: Sequence[str],
    *,
    cache_dir: str | os.PathLike,
    batch_size: int = 64,
    progress: bool = True,
    desc: str = "embed images",
) -> np.ndarray:
    """Embed images with ``encoder.encode_images``, reusing the cache.

    Parameters
    ----------
    encoder : ClipEncoder
        Model with ``encode_images(list of PIL.Image) -> (B, D) ndarray``.
    refs : sequence of str
        Image paths or ``tar://`` references, length N.
    content_hashes : sequence of str
        SHA-256 of each image's bytes, length N; the cache key is built from these,
        so renamed files still hit the cache and edited files miss it.
    cache_dir : path-like
        Folder for cache entries.
    batch_size : int, default=64
        Images encoded per forward pass.
    progress : bool, default=True
        Show a progress bar.
    desc : str
        Label of the progress bar.

    Returns
    -------
    ndarray of shape (N, D), float32
        L2-normalised image embeddings, memory-mapped from the cache.
    """
    key = stable_hash(
        {
            "kind": "image",
            "encoder": encoder_identity(encoder),
            "inputs": stable_hash(list(content_hashes)),
            "versions": package_versions(),
        }
    )

    def encode(start: int, stop: int) -> np.ndarray:
        return encoder.encode_images([open_image(r) for r in refs[start:stop]])

    return _cached_embedding(
        Path(cache_dir), key, len(refs), encode, batch_size, progress, desc
    )


def embed_texts(
    encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | os.PathLike,
    batch_size: int = 256,
    progress: bool = True,
    desc: str = "embed captions",
) -> np.ndarray:
    """Embed captions with ``encoder.encode_texts``, reusing the cache.

    Parameters
    ----------
    encoder : ClipEncoder or TextEncoder
        Model with ``encode_texts(list of str) -> (B, D) ndarray``.
    texts : sequence of str
        Captions, length N.
    cache_dir : path-like
        Folder for cache entries.
    batch_size : int, default=256
        Captions encoded per forward pass.
    progress : bool, default=True
        Show a progress bar.
    desc : str
        Label of the progress bar.

    Returns
    -------
    ndarray of shape (N, D), float32
        L2-normalised text embeddings, memory-mapped from the cache.
    """
    texts = list(texts)
    key = stable_hash(
        {
            "kind": "text",
            "encoder": encoder_identity(encoder),
            "inputs": stable_hash(texts),
            "versions": package_versions(),
        }
    )

    def encode(start: int, stop: int) -> np.ndarray:
        return encoder.encode_texts(texts[start:stop])

    return _cached_embedding(
        Path(cache_dir), key, len(texts), encode, batch_size, progress, desc
    )


def _cached_embedding(
    cache_dir: Path,
    key: str,
    n: int,
    encode: Callable[[int, int], np.ndarray],
    batch_size: int,
    progress: bool,
    desc: str,
) -> np.ndarray:
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"emb-{key[:32]}.npy"
    if final.exists():
        log.debug("%s: cache hit %s", desc, final.name)
        return np.load(final, mmap_mode="r")

    partial = cache_dir / f"emb-{key[:32]}.partial.npy"
    state_path = cache_dir / f"emb-{key[:32]}.partial.json"
    done = 0
    array = None
    if partial.exists() and state_path.exists():
        try:
            state = json.loads(state_path.read_text())
            array = np.load(partial, mmap_mode="r+")
            if array.shape[0] == n and state.get("key") == key:
                done = int(state["done"])
                log.info("%s: resuming at %d of %d", desc, done, n)
            else:
                array = None
        except (OSError, ValueError, KeyError):
            array = None

    with tqdm(
        total=n, initial=done, desc=desc, unit="item", disable=not progress
    ) as bar:
        for start in range(done, n, batch_size):
            stop = min(start + batch_size, n)
            vectors = np.asarray(encode(start, stop), dtype=np.float32)  # (B, D)
            if array is None:
                array = np.lib.format.open_memmap(
                    partial, mode="w+", dtype=np.float32, shape=(n, vectors.shape[1])
                )
            array[start:stop] = vectors
            array.flush()
            write_json(state_path, {"key": key, "done": stop})
            bar.update(stop - start)

    if array is None:  # n == 0: nothing to encode, nothing to learn the width from
        return np.zeros((0, 0), dtype=np.float32)
    del array
    os.replace(partial, final)
    state_path.unlink(missing_ok=True)
    return np.load(final, mmap_mode="r")
