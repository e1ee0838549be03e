"""Follow the canary check of `dejavu validate` across training epochs.

Trains a target on a target split with planted canaries (rare unmentioned objects,
repeated in training), a plain target on the same split without repeats, and a
reference on a disjoint split, keeping a checkpoint every ``--every`` epochs. Both
targets are audited against the reference at every checkpoint, with ground-truth
labels. For each epoch and k the script prints member PRG and member-minus-control
PRG of the canary target, then three one-sided Mann-Whitney tests of the canaries
against the other members:

- ``canary target``: their recall gaps, as `dejavu validate` tests them;
- ``plain target``: the same records' recall gaps without repeats, which shows how
  far the choice of records alone makes them stand out;
- ``repeats``: the change of each record's recall gap from the plain target to the
  canary target, the part the repeats add.

docs/validation.md reports its output.

Usage::

    OMP_NUM_THREADS=1 python scripts/canary_epochs.py --out runs/canary-epochs
    python scripts/canary_epochs.py --out runs/canary-2000 --records 2000 \\
        --epochs 8 --every 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from dejavu._io import prepare_run_dir
from dejavu.audit import AuditConfig, run_audit
from dejavu.data.scenes import write_scenes
from dejavu.errors import DejavuError
from dejavu.train import train_clips
from dejavu.validate import compare_canaries, plant_canaries

K = (1, 5, 10)
BATCH_SIZE = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument(
        "--records", type=int, default=400, help="records per split (at least 64)"
    )
    parser.add_argument("--public", type=int, default=3000, help="public images")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs")
    parser.add_argument(
        "--every", type=int, default=5, help="epochs between audited checkpoints"
    )
    parser.add_argument("--canaries", type=int, default=20, help="planted canaries")
    parser.add_argument(
        "--repeats", type=int, default=5, help="appearances of a canary per epoch"
    )
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument(
        "--model",
        default="dejavu-tiny-vit",
        help="model of both CLIPs: a dejavu or open_clip name, or a config JSON file",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a run folder made with other settings",
    )
    args = parser.parse_args()
    if args.records < BATCH_SIZE:
        parser.error(f"--records must be at least the batch size, {BATCH_SIZE}")
    if not 1 <= args.every <= args.epochs:
        parser.error("--every must be between 1 and --epochs")
    if not 1 <= args.canaries <= args.records // 2:
        parser.error("--canaries must be between 1 and half of --records")
    # The run folder is stamped like a dejavu command's, so a rerun with the same
    # settings resumes and one with other settings stops.
    settings = {
        key: value
        for key, value in vars(args).items()
        if key not in ("out", "overwrite")
    }
    try:
        prepare_run_dir(args.out, "canary-epochs", settings, overwrite=args.overwrite)
    except DejavuError as err:
        parser.error(str(err))

    scenes = args.out / "scenes"
    canary_set = scenes / "target_canaries.parquet"
    if not canary_set.exists():
        write_scenes(
            scenes,
            n_target=args.records,
            n_reference=args.records,
            n_control=args.records,
            n_public=args.public,
            seed=args.seed,
            formats=("manifest",),
            overwrite=True,
            progress=False,
        )
        plant_canaries(
            scenes / "target.parquet",
            canary_set,
            n_canaries=args.canaries,
            repeats=args.repeats,
            seed=args.seed,
        )

    runs = []
    for name, data in (
        ("target", canary_set),
        ("plain", scenes / "target.parquet"),
        ("reference", scenes / "reference.parquet"),
    ):
        if not (args.out / name / "checkpoints" / f"epoch_{args.epochs}.pt").exists():
            runs.append(
                {
                    "data": data,
                    "out": args.out / name,
                    "model": args.model,
                    "epochs": args.epochs,
                    "batch_size": BATCH_SIZE,
                    "seed": args.seed,
                    "device": "cpu",
                    "save_every": args.every,
                }
            )
    train_clips(runs, jobs=2)

    planted = pd.read_parquet(canary_set, columns=["id", "canary"])
    canaries = set(planted.loc[planted["canary"], "id"])
    # Checkpoints kept by save_every, and the final one.
    epochs = sorted({*range(args.every, args.epochs + 1, args.every), args.epochs})
    for epoch in epochs:
        checkpoint = f"checkpoints/epoch_{epoch}.pt"
        run_dirs = {}
        for target in ("target", "plain"):
            run_dir = args.out / "audits" / target / f"epoch_{epoch}"
            if not (run_dir / "summary.json").exists():
                run_audit(
                    AuditConfig(
                        target=str(args.out / target / checkpoint),
                        reference=str(args.out / "reference" / checkpoint),
                        target_set=str(canary_set),
                        control_set=str(scenes / "control.parquet"),
                        public_set=str(scenes / "public.parquet"),
                        out=str(run_dir),
                        k=list(K),
                        bootstrap=200,
                        seed=args.seed,
                        device="cpu",
                        progress=False,
                        write_report=False,
                        overwrite=True,
                    )
                )
            run_dirs[target] = run_dir
        print(f"epoch {epoch}")
        for line in _epoch_lines(run_dirs["target"], run_dirs["plain"], canaries):
            print(f"  {line}")


def _epoch_lines(run_dir: Path, plain_dir: Path, canaries: set) -> list[str]:
    results = json.loads((run_dir / "summary.json").read_text())["results"]
    lines = []
    for k in K:
        by_set = {e["set"]: e for e in results if e["k"] == k}
        lines.append(
            f"k={k}: member PRG {by_set['members']['prg']['value']:+.3f}, "
            f"member-minus-control PRG {by_set['difference']['prg']['value']:+.3f}"
        )
        tests = {
            "canary target": compare_canaries(run_dir, canaries, k),
            "plain target": compare_canaries(plain_dir, canaries, k),
            "repeats": compare_canaries(run_dir, canaries, k, baseline=plain_dir),
        }
        for name, test in tests.items():
            lines.append(
                f"  {name + ':':15s}canaries {test.canary_gap:+.3f} vs others "
                f"{test.other_gap:+.3f}, p = {test.p_value:.2g}"
            )
    return lines


if __name__ == "__main__":
    main()
