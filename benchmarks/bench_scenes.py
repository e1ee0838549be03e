"""Measure scene generation throughput: images per second written by write_scenes.

Usage::

    python benchmarks/bench_scenes.py [--n 2000] [--size 64] [--formats manifest]

Runs in one process. The time includes rendering, PNG encoding, writing the files
and the manifests, and the one-off rendering of the pictogram sprites, which is also
reported on its own. Prints one JSON line with the result, including CPU time and
the 1-minute load average, because on a shared machine the wall-clock rate depends
on what else runs.
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

from dejavu.data._scene_render import master_sprites
from dejavu.data.scenes import write_scenes


def _cpu_seconds() -> float:
    # User and system time of this process and of its finished worker processes.
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="Images to generate.")
    parser.add_argument("--size", type=int, default=64, help="Image side in pixels.")
    parser.add_argument(
        "--formats",
        default="manifest",
        help="Comma-separated formats, as for `dejavu scenes`.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="Worker processes (default: 2, or 1 on a single-CPU machine).",
    )
    parser.add_argument(
        "--backgrounds", default="procedural", help="procedural, photo or mixed."
    )
    args = parser.parse_args()

    start = time.perf_counter()
    master_sprites()
    sprites_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cpu_start = _cpu_seconds()
        write_scenes(
            Path(tmp) / "scenes",
            n_public=args.n,
            size=args.size,
            backgrounds=args.backgrounds,
            formats=args.formats.split(","),
            progress=False,
            workers=args.workers,  # None: min(2, CPUs)
        )
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_start
    result = {
        "images": args.n,
        "size": args.size,
        "formats": args.formats,
        "backgrounds": args.backgrounds,
        "workers": args.workers,
        "seconds": round(elapsed, 2),
        "images_per_second": round(args.n / elapsed, 1),
        "cpu_seconds": round(cpu, 2),
        "images_per_cpu_second": round(args.n / cpu, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "sprite_rendering_seconds": round(sprites_s, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
