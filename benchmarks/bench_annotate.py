"""Measure a scene detector: mAP, per-class recall and annotation throughput.

Generates fresh detector scenes (a seed the detector was not trained on), then

1. runs ultralytics' validator on all of them for box mAP50 and mAP50-95;
2. annotates them through ``dejavu.annotate.detect_manifest`` (no cache) and counts,
   per class, the true boxes recovered by a box of the same class with IoU >= 0.5;
3. reports images per second of that annotation pass, decoding included.

With ``--target``, ``--reference`` and ``--scenes`` it also runs the two-model audit
twice on the same scene sets, once with the manifests' ground-truth ``objects`` and
once with the detector's labels for every set, and reports both results.

Usage::

    python benchmarks/bench_annotate.py --weights scenes --n-scenes 2600 \\
        --seed 2024 --out bench-annotate.json
    python benchmarks/bench_annotate.py --n-scenes 0 --target T.pt \\
        --reference R.pt --scenes SCENES_DIR --out bench-audit-labels.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from dejavu._io import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="scenes", help="detector weights")
    parser.add_argument("--n-scenes", type=int, default=2600)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--size", type=int, default=64, help="scene size, pixels")
    parser.add_argument("--backgrounds", default="procedural")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=0, help="torch threads")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    parser.add_argument("--target", help="target CLIP checkpoint, for the audit")
    parser.add_argument("--reference", help="reference CLIP checkpoint")
    parser.add_argument(
        "--scenes", type=Path, help="scene folder with target, control, public sets"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    report = {}
    if args.n_scenes > 0:
        report["detector"] = measure_detector(args)
    if args.target and args.reference and args.scenes:
        report["audit"] = compare_audits(args)
    if args.out:
        write_json(args.out, report)


def measure_detector(args) -> dict:
    """Return mAP, per-class recall and throughput of ``args.weights``."""
    from dejavu.annotate import detect_manifest
    from dejavu.annotate.evaluate import per_class_recall
    from dejavu.annotate.yolo import evaluate_detector
    from dejavu.data.manifest import read_manifest
    from dejavu.data.scenes import write_scenes

    with tempfile.TemporaryDirectory(prefix="bench-annotate-") as tmp:
        # Fresh scenes, in both manifest and YOLO form.
        scenes = Path(tmp) / "scenes"
        paths = write_scenes(
            scenes,
            n_detector=args.n_scenes,
            seed=args.seed,
            size=args.size,
            backgrounds=args.backgrounds,
            formats=("manifest", "yolo"),
            progress=False,
        )

        # mAP over every fresh scene: the YOLO export splits them 80/20, so point
        # the validation part at both folders.
        data = yaml.safe_load((scenes / "yolo" / "data.yaml").read_text())
        data["path"] = str(scenes / "yolo")
        data["val"] = ["images/train", "images/val"]
        data_yaml = Path(tmp) / "all.yaml"
        data_yaml.write_text(yaml.safe_dump(data))
        quality = evaluate_detector(args.weights, data_yaml, batch_size=32)

        # Per-class recall and throughput through the annotation code path.
        manifest = read_manifest(paths["detector"], check_images=False)
        start = time.perf_counter()
        result = detect_manifest(
            manifest,
            args.weights,
            options={"batch_size": args.batch_size, "conf": args.conf},
            progress=False,
        )
        seconds = time.perf_counter() - start
        recall = per_class_recall(
            manifest.frame["objects"],
            manifest.frame["boxes"].map(list),
            result.frame["box_labels"],
            result.frame["boxes"],
        )

    rates = {name: found / total for name, (found, total) in recall.items()}
    report = {
        "weights": args.weights,
        "n_scenes": args.n_scenes,
        "seed": args.seed,
        "backgrounds": args.backgrounds,
        "conf": args.conf,
        "map50": quality["map50"],
        "map50_95": quality["map50_95"],
        "recall_min": min(rates.values()),
        "recall_min_class": min(rates, key=rates.get),
        "recall_mean": sum(rates.values()) / len(rates),
        "instances_min": min(total for _, total in recall.values()),
        "per_class_recall": {n: [f, t] for n, (f, t) in recall.items()},
        "images_per_second": len(manifest) / seconds,
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
    }
    summary = {k: v for k, v in report.items() if k != "per_class_recall"}
    print(json.dumps(summary, indent=2))
    worst = sorted(rates.items(), key=lambda item: item[1])[:5]
    print("lowest per-class recall:", ", ".join(f"{n} {r:.2f}" for n, r in worst))
    return report


def compare_audits(args) -> dict:
    """Run the audit with ground-truth labels and with detector labels."""
    from dejavu.annotate import resolve_labels
    from dejavu.audit import AuditConfig, run_audit
    from dejavu.data.manifest import read_manifest

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-annotate-audit-") as tmp:
        for source, detector in (("ground truth", None), ("detector", args.weights)):
            config = AuditConfig(
                target=args.target,
                reference=args.reference,
                target_set=str(args.scenes / "target.parquet"),
                control_set=str(args.scenes / "control.parquet"),
                public_set=str(args.scenes / "public.parquet"),
                out=str(Path(tmp) / source.replace(" ", "-")),
                k=[1, 5, 10],
                detector=detector,
                cache_dir=str(Path(tmp) / "cache"),
                progress=False,
                write_report=False,
            )
            run_dir = Path(run_audit(config))
            summary = json.loads((run_dir / "summary.json").read_text())
            results[source] = [
                {
                    "set": entry["set"],
                    "k": entry["k"],
                    **{m: entry[m] for m in ("ppg", "prg", "aucg")},
                }
                for entry in summary["results"]
            ]

        # How far the detector's label sets are from the truth, per set.
        agreement = {}
        for name in ("target", "control", "public"):
            manifest = read_manifest(args.scenes / f"{name}.parquet")
            truth = resolve_labels(manifest)
            found = resolve_labels(
                manifest,
                detector=args.weights,
                cache_dir=Path(tmp) / "cache" / "labels",  # the audit's detections
                progress=False,
            )
            exact = sum(set(t) == set(f) for t, f in zip(truth, found, strict=True))
            jaccard = [
                len(set(t) & set(f)) / len(set(t) | set(f)) if set(t) | set(f) else 1
                for t, f in zip(truth, found, strict=True)
            ]
            agreement[name] = {
                "exact_match": exact / len(truth),
                "mean_jaccard": sum(jaccard) / len(jaccard),
            }
    for source, entries in results.items():
        print(source)
        for entry in entries:
            cells = "  ".join(
                f"{m} {entry[m]['value']:+.3f} [{entry[m]['ci_low']:+.3f}, "
                f"{entry[m]['ci_high']:+.3f}]"
                for m in ("ppg", "prg", "aucg")
            )
            print(f"  {entry['set']:<11} k={entry['k']:<3} {cells}")
    print("label agreement with ground truth:", json.dumps(agreement))
    return {"results": results, "label_agreement": agreement}


if __name__ == "__main__":
    main()
