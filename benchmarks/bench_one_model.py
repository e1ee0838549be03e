"""Compare the one-model and two-model tests on the same target, on scene data.

Runs one audit with both ``--reference`` and ``--reference-text`` on the scene
fixture that ``tests/conftest.py`` builds (a tiny ViT CLIP target and reference
trained on disjoint scene splits, a control split and a public split), then prints a
Markdown table: for each record set and k, PPG, PRG and AUCG of the two-model test
next to those of the one-model test, followed by the agreement figures (Spearman
correlation of per-record recall gaps, and the overlap of the top-L records under the
``gap`` ranking).

Usage::

    python benchmarks/bench_one_model.py --fixture /work/fixture \\
        --out /tmp/bench-one-model --k 1,5,10 --bootstrap 1000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dejavu.audit import AuditConfig, run_audit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fixture",
        type=Path,
        required=True,
        help="folder of the scene fixture (DEJAVU_FIXTURE_DIR of the tests)",
    )
    parser.add_argument(
        "--epoch", type=int, default=40, help="epoch of the checkpoints to audit"
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder to write")
    parser.add_argument("--k", default="1,5,10", help="comma-separated k values")
    parser.add_argument("--mode", default="t2i", choices=["t2i", "t2t"])
    parser.add_argument("--reference-text", default="default")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    scenes = args.fixture / "scenes"
    checkpoint = f"checkpoints/epoch_{args.epoch}.pt"
    config = AuditConfig(
        target=str(args.fixture / "target" / checkpoint),
        reference=str(args.fixture / "reference" / checkpoint),
        reference_text=args.reference_text,
        target_set=str(scenes / "target.parquet"),
        control_set=str(scenes / "control.parquet"),
        public_set=str(scenes / "public.parquet"),
        out=str(args.out),
        k=[int(k) for k in args.k.split(",")],
        mode=args.mode,
        bootstrap=args.bootstrap,
        device="cpu",
        progress=False,
        write_report=False,
        overwrite=True,
    )
    start = time.perf_counter()
    run_dir = run_audit(config)
    seconds = time.perf_counter() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"audit of both tests: {seconds:.0f} s, run folder {run_dir}\n")
    print(results_table(summary))
    print()
    print(agreement_table(summary))


def _interval(entry: dict, metric: str) -> str:
    value = entry[metric]
    if value["ci_low"] is None:
        return f"{value['value']:+.3f}"
    return f"{value['value']:+.3f} [{value['ci_low']:+.3f}, {value['ci_high']:+.3f}]"


def results_table(summary: dict) -> str:
    """Format the two tests' PPG, PRG and AUCG side by side as Markdown."""
    one_model = {(e["set"], e["k"]): e for e in summary["one_model"]["results"]}
    lines = [
        "| set | k | test | PPG | PRG | AUCG |",
        "|---|---|---|---|---|---|",
    ]
    for entry in summary["results"]:
        for test, row in (
            ("two-model", entry),
            ("one-model", one_model[(entry["set"], entry["k"])]),
        ):
            cells = " | ".join(_interval(row, m) for m in ("ppg", "prg", "aucg"))
            lines.append(f"| {entry['set']} | {entry['k']} | {test} | {cells} |")
    return "\n".join(lines)


def agreement_table(summary: dict) -> str:
    """Format the agreement entries of the run as Markdown."""
    agreement = summary["one_model"]["agreement"]
    fractions = [item["fraction"] for item in agreement[0]["top_l_overlap"]]
    header = " | ".join(f"top {f * 100:g}% overlap" for f in fractions)
    lines = [
        f"| set | k | Spearman ρ (p) | {header} |",
        "|---|---|---|" + "---|" * len(fractions),
    ]
    for entry in agreement:
        if entry["spearman"] is None:
            rho = "undefined"
        else:
            rho = f"{entry['spearman']:+.3f} ({entry['spearman_p_value']:.1g})"
        overlaps = " | ".join(
            f"{item['overlap']:.2f} (L={item['l']})" for item in entry["top_l_overlap"]
        )
        lines.append(f"| {entry['set']} | {entry['k']} | {rho} | {overlaps} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
