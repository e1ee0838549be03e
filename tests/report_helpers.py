"""A small synthetic audit run folder, written exactly as docs/schema.md describes.

The report tests and the notebook test use it until the shared end-to-end fixture
provides a real audit run. Scores are computed from the synthetic neighbours, so the
tables agree with each other; the neighbours themselves are drawn at random, with the
target biased towards public images that share the member's objects.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy.stats import binomtest

VOCABULARY = ["automobile", "bus", "dog", "cow", "bread", "sheep", "bicycle", "tree"]
HOSTILE_CAPTION = '<script>alert("caption")</script><img src=x onerror=alert(2)> cat'
HOSTILE_LABEL = "<b>bold</b> & <i>co</i>"


def checkerboard(seed: int, size: int = 64) -> Image.Image:
    """Return a high-contrast picture whose detail a strong blur must remove."""
    rng = np.random.default_rng(seed)
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    cell = 8
    for y in range(0, size, cell):
        for x in range(0, size, cell):
            if (x // cell + y // cell) % 2 == 0:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour)
    return image


def make_synthetic_run(
    folder: Path,
    *,
    members: int = 12,
    control: int = 8,
    public: int = 24,
    k_grid: tuple[int, ...] = (1, 3),
    test: str = "two-model",
    hostile: bool = False,
    one_model: bool = False,
    seed: int = 0,
) -> Path:
    """Write a run folder with summary.json, records.parquet, public.parquet and PNGs.

    Parameters
    ----------
    folder : Path
        The run folder to create; images go to a sibling folder ``FOLDER-images``.
    members, control, public : int
        Records per set; ``control=0`` writes a run without a control set.
    hostile : bool
        Give the first member an HTML caption and an HTML object label.
    one_model : bool
        Add a ``one_model`` key with a second results list and an agreement entry.
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True)
    image_dir = folder.parent / f"{folder.name}-images"
    image_dir.mkdir()
    vocabulary = VOCABULARY + ([HOSTILE_LABEL] if hostile else [])

    public_rows = []
    shard = image_dir / "public-000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(public):
            objects = sorted(rng.choice(vocabulary, size=2, replace=False).tolist())
            path = image_dir / f"public-{i}.png"
            checkerboard(1000 + i).save(path)
            if i % 2:
                # Half the public images are referred to inside a WebDataset shard.
                tar.add(path, arcname=f"public-{i}.png")
                ref = f"tar://{shard}#public-{i}.png"
            else:
                ref = str(path)
            public_rows.append(
                {
                    "id": f"public-{i}",
                    "image": ref,
                    "caption": f"a picture with a {objects[0]}",
                    "objects": objects,
                }
            )
    public_frame = pd.DataFrame(public_rows)
    public_frame.to_parquet(folder / "public.parquet", index=False)

    K = max(k_grid)
    rows = []
    for record_set, count in (("members", members), ("control", control)):
        for i in range(count):
            record_id = f"{'train' if record_set == 'members' else 'control'}-{i}"
            objects = sorted(rng.choice(vocabulary, size=3, replace=False).tolist())
            caption = f"a scene with a {objects[0]}"
            if hostile and record_set == "members" and i == 0:
                caption = HOSTILE_CAPTION
                objects = sorted({*objects[:2], HOSTILE_LABEL})
            path = image_dir / f"{record_id}.png"
            checkerboard(i + (0 if record_set == "members" else 500)).save(path)
            row = {
                "id": record_id,
                "set": record_set,
                "image": str(path),
                "caption": caption,
                "objects": objects,
                "min_dist": float(rng.uniform(0.2, 0.8)),
            }
            for model in ("target", "reference"):
                bias = model == "target" and record_set == "members"
                neighbours = _draw_neighbours(rng, public_rows, objects, K, bias)
                row[f"{model}_neighbours"] = [public_rows[j]["id"] for j in neighbours]
                row[f"{model}_similarities"] = sorted(
                    rng.uniform(0.1, 0.9, K).tolist(), reverse=True
                )
                for k in k_grid:
                    predicted = sorted(
                        {o for j in neighbours[:k] for o in public_rows[j]["objects"]}
                    )
                    correct = len(set(predicted) & set(objects))
                    row[f"{model}_k{k}_predicted"] = predicted
                    row[f"{model}_k{k}_correct"] = correct
                    row[f"{model}_k{k}_precision"] = correct / max(1, len(predicted))
                    row[f"{model}_k{k}_recall"] = correct / len(objects)
            rows.append(row)
    records = pd.DataFrame(rows)
    records["rank_min_dist"] = _rank(records, records["min_dist"], ascending=True)
    for k in k_grid:
        correct = records[f"target_k{k}_correct"]
        gap = correct - records[f"reference_k{k}_correct"]
        records[f"rank_correct_k{k}"] = _rank(records, correct, ascending=False)
        records[f"rank_gap_k{k}"] = _rank(records, gap, ascending=False)
    records.to_parquet(folder / "records.parquet", index=False)

    results = _results(records, k_grid, rng)
    summary = {
        "schema_version": 1,
        "test": test,
        "settings": {
            "k": list(k_grid),
            "mode": "t2i",
            "rank": "min_dist",
            "rankings": ["min_dist", "correct", "gap"],
            "top_l": [0.1, 0.5],
            "bootstrap": 200,
            "ci_level": 0.95,
            "seed": seed,
            "top_m": None,
            "batch_size": 32,
            "device": "cpu",
            "skip_bad_records": False,
        },
        "inputs": {
            "target": {
                "path": "/models/target <tiny>.pt",
                "sha256": "ab" * 32,
                "size_bytes": 14_500_000,
                "architecture": "dejavu-tiny-vit",
                "embed_dim": 128,
            },
            "reference": {
                "path": "/models/reference.pt",
                "sha256": "cd" * 32,
                "size_bytes": 14_500_000,
                "architecture": "dejavu-tiny-vit",
                "embed_dim": 128,
            },
            "target_set": {"path": "/data/a.csv", "sha256": "ef" * 32, "records": 13},
            "public_set": {"path": "/data/p.csv", "sha256": "01" * 32, "records": 24},
        },
        "versions": {"dejavu": "0.1.0", "python": "3.11", "numpy": np.__version__},
        "counts": {
            "members": {
                "records": members + 1,
                "scored": members,
                "excluded_no_objects": 1,
                "skipped_bad": 0,
            },
            "public": {
                "records": public,
                "scored": public,
                "excluded_no_objects": 0,
                "skipped_bad": 0,
            },
        },
        "skipped": [],
        "notes": ["Synthetic run written by the report tests."],
        "results": results,
    }
    if control:
        summary["counts"]["control"] = {
            "records": control,
            "scored": control,
            "excluded_no_objects": 0,
            "skipped_bad": 0,
        }
        summary["inputs"]["control_set"] = {
            "path": "/data/c.csv",
            "sha256": "23" * 32,
            "records": control,
        }
    if one_model:
        summary["one_model"] = {
            "test": "one-model",
            "reference": {
                "path": "all-MiniLM-L6-v2",
                "sha256": None,
                "size_bytes": None,
                "architecture": "all-MiniLM-L6-v2",
                "embed_dim": 384,
                "kind": "text",
            },
            "results": [r for r in results if r["set"] == "members"],
            "agreement": [
                {
                    "k": k,
                    "set": "members",
                    "spearman": 0.61,
                    "spearman_p_value": 0.004,
                    "top_l_overlap": [{"fraction": 0.5, "l": 6, "overlap": 0.5}],
                }
                for k in k_grid
            ],
        }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder


def _draw_neighbours(rng, public_rows, objects, count, bias):
    weights = np.ones(len(public_rows))
    if bias:
        for j, entry in enumerate(public_rows):
            weights[j] += 6.0 * len(set(entry["objects"]) & set(objects))
    weights /= weights.sum()
    return rng.choice(len(public_rows), size=count, replace=False, p=weights).tolist()


def _rank(records, values, ascending):
    order = pd.DataFrame(
        {"value": values, "min_dist": records["min_dist"], "id": records["id"]}
    ).sort_values(["value", "min_dist", "id"], ascending=[ascending, True, True])
    ranks = pd.Series(0, index=records.index)
    ranks[order.index] = np.arange(1, len(order) + 1)
    return ranks


def _interval(values, rng, resamples=200):
    """Return the mean of per-record values with a percentile bootstrap interval.

    PPG and PRG are means of the sign of per-record gaps, and AUCG and the top-L
    gaps are means of gaps, so one helper serves every figure.
    """
    values = np.asarray(values, dtype=float)
    draws = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"value": float(values.mean()), "ci_low": float(low), "ci_high": float(high)}


def _gap(frame, score, k):
    return frame[f"target_k{k}_{score}"].to_numpy(dtype=float) - frame[
        f"reference_k{k}_{score}"
    ].to_numpy(dtype=float)


def _sign_p(frame, score, k):
    diff = _gap(frame, score, k)
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses).pvalue)


def _results(records, k_grid, rng):
    results = []
    per_set = {name: records[records["set"] == name] for name in ("members", "control")}
    for k in k_grid:
        entries = {}
        for name, frame in per_set.items():
            if frame.empty:
                continue
            entry = {"set": name, "k": k, "n": len(frame)}
            entry["ppg"] = _interval(np.sign(_gap(frame, "precision", k)), rng)
            entry["prg"] = _interval(np.sign(_gap(frame, "recall", k)), rng)
            entry["aucg"] = _interval(_gap(frame, "recall", k), rng)
            entry["ppg_p_value"] = _sign_p(frame, "precision", k)
            entry["prg_p_value"] = _sign_p(frame, "recall", k)
            entry["mean_precision"] = {
                m: float(frame[f"{m}_k{k}_precision"].mean())
                for m in ("target", "reference")
            }
            entry["mean_recall"] = {
                m: float(frame[f"{m}_k{k}_recall"].mean())
                for m in ("target", "reference")
            }
            entry["top_l"] = _top_l(frame, k, rng)
            entries[name] = entry
            results.append(entry)
        if "control" not in entries:
            continue
        difference = {"set": "difference", "k": k, "n": len(per_set["members"])}
        for metric in ("ppg", "prg", "aucg"):
            m, c = entries["members"][metric], entries["control"][metric]
            difference[metric] = {
                "value": m["value"] - c["value"],
                "ci_low": m["ci_low"] - c["ci_high"],
                "ci_high": m["ci_high"] - c["ci_low"],
            }
        difference["ppg_p_value"] = None
        difference["prg_p_value"] = None
        difference["mean_precision"] = {"target": 0.0, "reference": 0.0}
        difference["mean_recall"] = {"target": 0.0, "reference": 0.0}
        difference["top_l"] = []
        results.append(difference)
    return results


def _top_l(frame, k, rng):
    entries = []
    for ranking, column in (
        ("min_dist", "rank_min_dist"),
        ("correct", f"rank_correct_k{k}"),
        ("gap", f"rank_gap_k{k}"),
    ):
        ordered = frame.sort_values(column)
        for fraction in (0.1, 0.5):
            count = max(1, int(len(frame) * fraction))
            top = ordered.head(count)
            entry = {"ranking": ranking, "fraction": fraction, "l": count}
            entry["precision_gap"] = _interval(_gap(top, "precision", k), rng, 50)
            entry["recall_gap"] = _interval(_gap(top, "recall", k), rng, 50)
            # The report only displays f_gap, so the recall gap stands in for it.
            entry["f_gap"] = dict(entry["recall_gap"])
            entry["inflated"] = ranking == "gap"
            entry["warning"] = f"L = {count} is below 10" if count < 10 else None
            entries.append(entry)
    return entries
