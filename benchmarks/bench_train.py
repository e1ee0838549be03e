"""Measure CLIP training throughput, and how well a model fits its records, on scenes.

Usage::

    python benchmarks/bench_train.py [--model dejavu-tiny-vit] [--n 500] [--epochs 3]
    python benchmarks/bench_train.py --epochs 40 --save-every 10 --retrieval

Generates ``--n`` scene records (64 px), trains ``--epochs`` epochs with
``train_clip`` on the CPU with its default learning rate, warmup and weight decay, and
prints one JSON line: the wall-clock images per second of each epoch (from
``train_log.jsonl``, so excluding model creation and checkpoint writing), and the CPU
seconds of the whole run per trained image, which includes both. On a shared machine
the wall-clock rate depends on the load, so the line also reports the 1-minute load
average and the CPU time, which does not.

With ``--retrieval`` it also generates ``--n`` control records and, for every kept
checkpoint, reports caption-to-image recall@1 and recall@5: the fraction of records
whose caption ranks the record's own image first (or in the top 5) among the images
of its set. High recall on the training records and chance-level recall on the
control records (1/n) show that the model fits its training records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dejavu.data.scenes import write_scenes
from dejavu.train import train_clip


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _caption_to_image_recall(checkpoint: Path, manifest: Path) -> dict:
    """Recall@1 and @5 of each record's own image among its set, from its caption."""
    from dejavu.data.manifest import iter_image_batches, read_manifest
    from dejavu.models import load_clip

    encoder = load_clip(checkpoint, device="cpu")
    frame = read_manifest(manifest, check_images=False).frame
    images = np.concatenate(
        [
            encoder.encode_images(b)
            for b in iter_image_batches(frame["image"].tolist(), 128)
        ]
    )  # (N, D)
    captions = frame["caption"].tolist()
    texts = np.concatenate(
        [encoder.encode_texts(captions[i : i + 256]) for i in range(0, len(frame), 256)]
    )  # (N, D)
    similarity = texts @ images.T  # (N, N), row i: caption i against every image
    own = similarity[np.arange(len(frame)), np.arange(len(frame))]
    rank = (similarity > own[:, None]).sum(axis=1)  # images ranked above its own
    return {"r1": float(np.mean(rank < 1)), "r5": float(np.mean(rank < 5))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dejavu-tiny-vit", help="Model config.")
    parser.add_argument("--n", type=int, default=500, help="Training records.")
    parser.add_argument("--epochs", type=int, default=3, help="Epochs to time.")
    parser.add_argument("--batch-size", type=int, default=64, help="Batch size.")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads value.")
    parser.add_argument("--save-every", type=int, help="Keep every N-th checkpoint.")
    parser.add_argument(
        "--retrieval",
        action="store_true",
        help="Report caption-to-image recall on training and control records.",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        paths = write_scenes(
            Path(tmp) / "scenes",
            n_target=args.n,
            n_control=args.n if args.retrieval else 0,
            formats=("manifest",),
            progress=False,
        )
        cpu_before = _cpu_seconds()
        start = time.perf_counter()
        train_clip(
            paths["target"],
            Path(tmp) / "run",
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            device="cpu",
            save_every=args.save_every,
            progress=False,
        )
        wall = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_before
        log = [
            json.loads(line) for line in (Path(tmp) / "run" / "train_log.jsonl").open()
        ]
        recall = {}
        if args.retrieval:
            checkpoints = (Path(tmp) / "run" / "checkpoints").glob("epoch_*.pt")
            for path in sorted(checkpoints, key=lambda p: int(p.stem.split("_")[1])):
                recall[path.stem] = {
                    split: _caption_to_image_recall(path, paths[split])
                    for split in ("target", "control")
                }

    trained = sum(
        row["images_per_second"] * row["seconds"] for row in log
    )  # images actually trained (whole batches only)
    print(
        json.dumps(
            {
                "model": args.model,
                "records": args.n,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "torch_threads": torch.get_num_threads(),
                "epoch_images_per_second": [row["images_per_second"] for row in log],
                "run_wall_seconds": round(wall, 1),
                "run_cpu_seconds": round(cpu, 1),
                "cpu_ms_per_image": round(1000 * cpu / trained, 2),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                "final_loss": round(log[-1]["loss"], 4),
                "recall": recall,
            }
        )
    )


if __name__ == "__main__":
    main()
