"""Peak memory of an audit against the number of images.

Generates scene sets of N target and N public records, then runs a two-model audit
with two untrained tiny ViT CLIPs, in a fresh process per size, and reports the peak
resident memory (ru_maxrss). Streaming means the peak should grow only with the
embeddings (N x 128 float32 per model and set), not with the images.

Usage:
    python benchmarks/bench_audit_memory.py --sizes 5000,20000 --work /tmp/bench-mem
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _child(size: int, work: Path) -> dict:
    import torch

    import dejavu.models  # noqa: F401  registers the tiny configs
    from dejavu.audit import AuditConfig, run_audit
    from dejavu.data.scenes import write_scenes

    scenes = work / f"scenes-{size}"
    if not (scenes / "public.parquet").exists():
        write_scenes(
            scenes, n_target=size, n_public=size, seed=0, formats=("manifest",),
            overwrite=True, progress=False,
        )  # fmt: skip
    import open_clip

    paths = []
    for seed in (0, 1):
        path = work / f"tiny-vit-{seed}.pt"
        if not path.exists():
            torch.manual_seed(seed)
            model = open_clip.create_model("dejavu-tiny-vit")
            torch.save({"state_dict": model.state_dict()}, path)
        paths.append(path)

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    run_audit(
        AuditConfig(
            target=str(paths[0]),
            reference=str(paths[1]),
            model="dejavu-tiny-vit",
            target_set=str(scenes / "target.parquet"),
            public_set=str(scenes / "public.parquet"),
            out=str(work / f"run-{size}"),
            bootstrap=1000,
            batch_size=256,
            device="cpu",
            progress=False,
            write_report=False,
            overwrite=True,
        )
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # 2 models x (public + target) vectors of 128 float32.
    embeddings_mb = 2 * 2 * size * 128 * 4 / 2**20
    return {
        "size": size,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak / 1024, 1),
        "rss_before_audit_mb": round(baseline / 1024, 1),
        "embeddings_mb": round(embeddings_mb, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-audit-memory"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        print(json.dumps(_child(args.child, args.work)))
        return
    print("size  seconds  peak RSS MB  RSS before audit MB  embeddings MB")
    for size in [int(s) for s in args.sizes.split(",")]:
        output = subprocess.run(
            [sys.executable, __file__, "--child", str(size), "--work", str(args.work)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(
            f"{row['size']:>5}  {row['seconds']:>7}  {row['peak_rss_mb']:>11}  "
            f"{row['rss_before_audit_mb']:>19}  {row['embeddings_mb']:>13}"
        )


if __name__ == "__main__":
    main()
