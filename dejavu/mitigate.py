"""The mitigation study: memorization against utility across text randomization rates.

For each rate ρ, :func:`run_mitigation` trains a target CLIP on the target set and a
reference CLIP on the reference set with the same recipe (same ρ, epochs and seed).
A reference trained without randomization would differ from the target in quality
as well as in memorization, and the audit would then show a gap even on records
neither model saw. Each pair is audited on the target set and on a control set, and
the target's zero-shot and linear-probe utility is measured on a labelled image set.

The output folder holds::

    OUT/
      .dejavu-run.json               command and recipe; a rerun with equal settings
                                     resumes
      .stages/                       which trainings, audits and evaluations finished
      models/rate-R/target/          dejavu train folders (checkpoints/epoch_E.pt),
      models/rate-R/reference/       plus utility.json in the target's folder
      audits/rate-R/                 an audit run folder per rate (docs/schema.md)
      mitigation.csv                 one row per (rate, record set, k)
      mitigation.json                the same rows, with the settings and inputs
      mitigation.png                 member-minus-control PRG against zero-shot utility

The trainings of all rates run ``jobs`` at a time in separate processes, each with
``threads`` torch CPU threads (default 1). On a small shared CPU machine two
one-thread processes train much faster than one process with two threads, and each
model's weights are the same as when it is trained alone with the same thread count.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dejavu._io import (
    StageRecords,
    atomic_path,
    package_versions,
    prepare_run_dir,
    write_json,
)
from dejavu.errors import InputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
METRICS = ("ppg", "prg", "aucg")
ROLES = ("target", "reference")


@dataclass
class MitigationConfig:
    """Settings of one mitigation study; the CLI options map onto these fields."""

    target_set: str  # records the target models train on and the audit scores
    reference_set: str  # records the reference models train on
    control_set: str  # records of neither model, scored alongside the members
    public_set: str  # images the audits retrieve from
    out: str  # output folder
    rates: list[float]  # text randomization rates, each in [0, 1)
    eval_set: str | None = None  # labelled images for utility (default: public set)
    model: str = "dejavu-tiny-vit"  # architecture of every model
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    text_mask_mode: str = "drop"  # drop the chosen words or replace them by "_"
    seed: int = 0  # seed of training, audits and the linear probe's split
    device: str = "auto"
    threads: int = 1  # torch CPU threads of each training process
    jobs: int = 2  # models trained at once, each in its own process
    k: list[int] = field(default_factory=lambda: [1, 5, 10])
    bootstrap: int = 1000  # bootstrap resamples of every audit interval
    overwrite: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raise InputError for settings that cannot work, before any training."""
        from dejavu.textaug import check_mask_settings

        if not self.rates:
            raise InputError("no rates given; pass --rates such as 0,0.3,0.5,0.7")
        for rate in self.rates:
            check_mask_settings(rate, self.text_mask_mode)
        names = [rate_name(rate) for rate in self.rates]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(
                f"rates {self.rates} list {', '.join(repeated)} more than once; "
                "give each rate once"
            )
        for name in ("epochs", "batch_size", "threads", "jobs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(
                    f"--{name.replace('_', '-')} must be an integer of at least 1, "
                    f"got {value!r}"
                )
        if not self.k or any(int(k) < 1 for k in self.k):
            raise InputError(f"--k {self.k} is invalid; give integers of at least 1")
        if self.bootstrap < 0:
            raise InputError(f"--bootstrap {self.bootstrap} must be 0 or more")

    def recipe(self) -> dict:
        """Return the settings shared by every rate, which the output folder records.

        The rates are left out, so a rerun with more rates reuses the finished ones.
        ``threads``, ``jobs`` and ``progress`` change only speed and display.
        """
        return {
            "target_set": _resolved(self.target_set),
            "reference_set": _resolved(self.reference_set),
            "control_set": _resolved(self.control_set),
            "public_set": _resolved(self.public_set),
            "eval_set": _resolved(self.eval_set or self.public_set),
            "model": self.model,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "text_mask_mode": self.text_mask_mode,
            "seed": self.seed,
            "device": self.device,
            "k": sorted({int(k) for k in self.k}),
            "bootstrap": self.bootstrap,
        }


def rate_name(rate: float) -> str:
    """Return the folder name of a rate, such as ``rate-0.3``."""
    return f"rate-{float(rate):g}"


def run_mitigation(config: MitigationConfig) -> pd.DataFrame:
    """Train, audit and evaluate a target and reference pair per rate; write a table.

    Parameters
    ----------
    config : MitigationConfig
        The study's settings.

    Returns
    -------
    pandas.DataFrame
        The table written to ``mitigation.csv``: one row per (rate, record set, k),
        record sets ``members``, ``control`` and ``difference``, with columns
        ``rate``, ``set``, ``k``, ``n``, ``ppg``, ``prg``, ``aucg`` (each with
        ``_ci_low`` and ``_ci_high``), ``ppg_p_value``, ``prg_p_value``,
        ``zero_shot``, ``linear_probe``, their ``_chance`` columns and
        ``utility_metric`` (``mean_average_precision`` or ``accuracy``).

    Raises
    ------
    dejavu.errors.DejavuError
        For invalid settings or record sets, before any training; and for errors
        of training, auditing or evaluation.
    """
    config.validate()
    recipe = config.recipe()
    _check_sets(config)
    out = prepare_run_dir(config.out, "mitigate", recipe, overwrite=config.overwrite)
    stages = StageRecords(out)

    # Training: every model not finished by an earlier run, jobs at a time.
    runs = _training_runs(config, out)
    _train_all(runs, stages, config.jobs)

    # Audits and utility, one rate after another.
    utility = {}
    for rate in config.rates:
        name = rate_name(rate)
        target = runs[(name, "target")]["checkpoint"]
        reference = runs[(name, "reference")]["checkpoint"]
        audit_dir = out / "audits" / name
        stages.run(
            f"audit-{name}",
            {**recipe, "rate": rate},
            lambda t=target, r=reference, d=audit_dir: _audit(config, t, r, d),
        )
        utility_path = out / "models" / name / "target" / "utility.json"
        stages.run(
            f"evaluate-{name}",
            {**recipe, "rate": rate},
            lambda t=target, p=utility_path: _evaluate(config, t, p),
        )
        utility[rate] = utility_path

    table = mitigation_table(
        {rate: out / "audits" / rate_name(rate) for rate in config.rates}, utility
    )
    _write_outputs(out, config, recipe, table, runs)
    return table


def mitigation_table(
    audits: dict[float, str | os.PathLike], utility: dict[float, str | os.PathLike]
) -> pd.DataFrame:
    """Combine audit run folders and utility files into the mitigation table.

    Parameters
    ----------
    audits : dict of float to path-like
        Audit run folder of each rate.
    utility : dict of float to path-like
        JSON written from :func:`dejavu.evaluate.evaluate_checkpoint` for each rate.

    Returns
    -------
    pandas.DataFrame
        One row per (rate, record set, k), sorted by rate, in the audit's order of
        results within a rate; columns as listed in :func:`run_mitigation`.
    """
    import json

    rows = []
    for rate in sorted(audits):
        summary = json.loads((Path(audits[rate]) / "summary.json").read_text())
        scores = json.loads(Path(utility[rate]).read_text())
        for entry in summary["results"]:
            row = {"rate": float(rate), "set": entry["set"], "k": int(entry["k"])}
            row["n"] = entry.get("n")
            for metric in METRICS:
                interval = entry[metric]
                row[metric] = interval["value"]
                row[f"{metric}_ci_low"] = interval["ci_low"]
                row[f"{metric}_ci_high"] = interval["ci_high"]
            row["ppg_p_value"] = entry.get("ppg_p_value")
            row["prg_p_value"] = entry.get("prg_p_value")
            row["zero_shot"] = scores["zero_shot"]["value"]
            row["zero_shot_chance"] = scores["zero_shot"]["chance"]
            row["linear_probe"] = scores["linear_probe"]["value"]
            row["linear_probe_chance"] = scores["linear_probe"]["chance"]
            row["utility_metric"] = scores["metric"]
            rows.append(row)
    return pd.DataFrame(rows)


def _resolved(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def _check_sets(config: MitigationConfig) -> None:
    """Check columns, disjoint ids and sizes cheaply, so no training is wasted.

    Images are not opened here; training and the audit check them.
    """
    from dejavu.data.manifest import read_manifest

    caption = ("id", "image", "caption")
    specs = [
        ("target set", config.target_set, caption),
        ("reference set", config.reference_set, caption),
        ("control set", config.control_set, caption),
        ("public set", config.public_set, ("id", "image")),
    ]
    seen: dict[str, str] = {}
    sizes = {}
    for name, path, require in specs:
        manifest = read_manifest(
            path, set_name=name, require=require, check_images=False
        )
        sizes[name] = len(manifest.frame)
        for record_id in manifest.frame["id"]:
            if record_id in seen:
                raise InputError(
                    f"id {record_id!r} is in both the {seen[record_id]} and the "
                    f"{name} {path}; the sets of a mitigation study must be disjoint"
                )
            seen[record_id] = name

    k_max = max(int(k) for k in config.k)
    if k_max > sizes["public set"]:
        raise InputError(
            f"k = {k_max} is larger than the public set ({sizes['public set']} "
            f"records in {config.public_set}); lower --k or use a larger public set"
        )
    for name in ("target set", "reference set"):
        if sizes[name] < config.batch_size:
            raise InputError(
                f"the {name} has {sizes[name]} records, fewer than the batch size "
                f"{config.batch_size}; lower --batch-size"
            )

    eval_set = config.eval_set or config.public_set
    frame = read_manifest(eval_set, set_name="evaluation set", check_images=False).frame
    if "label" not in frame.columns and "objects" not in frame.columns:
        raise InputError(
            f"evaluation set {eval_set} has neither a 'label' nor an 'objects' "
            "column; give --eval-set a labelled manifest"
        )


def _training_runs(config: MitigationConfig, out: Path) -> dict[tuple, dict]:
    """Return the train_clip arguments and final checkpoint of every model."""
    data = {"target": config.target_set, "reference": config.reference_set}
    runs = {}
    for rate in config.rates:
        name = rate_name(rate)
        for role in ROLES:
            folder = out / "models" / name / role
            kwargs = {
                "data": _resolved(data[role]),
                "out": str(folder),
                "model": config.model,
                "epochs": config.epochs,
                "batch_size": config.batch_size,
                "lr": config.lr,
                "text_mask_rate": float(rate),
                "text_mask_mode": config.text_mask_mode,
                "seed": config.seed,
                "device": config.device,
                "threads": config.threads,
                "progress": False,
            }
            runs[(name, role)] = {
                "stage": f"train-{name}-{role}",
                "kwargs": kwargs,
                "checkpoint": folder / "checkpoints" / f"epoch_{config.epochs}.pt",
            }
    return runs


def _train_all(runs: dict[tuple, dict], stages: StageRecords, jobs: int) -> None:
    """Train the models whose stage is not done, ``jobs`` processes at a time.

    A model interrupted in an earlier run resumes from its last checkpoint, because
    train_clip reuses its folder when the settings are equal.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pending = [
        run for run in runs.values() if not stages.done(run["stage"], run["kwargs"])
    ]
    if not pending:
        return
    log.info("training %d models, %d at a time", len(pending), jobs)
    if jobs == 1 or len(pending) == 1:
        for run in pending:
            stages.run(run["stage"], run["kwargs"], lambda r=run: _train(r["kwargs"]))
        return

    # "spawn" starts each worker in a fresh interpreter, because a forked child
    # cannot initialise CUDA again (PyTorch's multiprocessing notes).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {pool.submit(_train, run["kwargs"]): run for run in pending}
        try:
            for future in as_completed(futures):
                run = futures[future]
                future.result()  # raises the worker's error
                stages.mark(run["stage"], run["kwargs"])
                log.info("%s: finished", run["stage"])
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _train(kwargs: dict) -> Path:
    from dejavu.train import train_clip

    return train_clip(**kwargs)


def _audit(config: MitigationConfig, target: Path, reference: Path, out: Path):
    from dejavu.audit import AuditConfig, run_audit

    run_audit(
        AuditConfig(
            target=str(target),
            reference=str(reference),
            target_set=config.target_set,
            control_set=config.control_set,
            public_set=config.public_set,
            out=str(out),
            k=list(config.k),
            bootstrap=config.bootstrap,
            seed=config.seed,
            batch_size=config.batch_size,
            device=config.device,
            progress=config.progress,
            write_report=False,
            # When this stage runs again, its checkpoints may have been retrained,
            # so an audit folder of older checkpoints is replaced.
            overwrite=True,
        )
    )


def _evaluate(config: MitigationConfig, checkpoint: Path, path: Path) -> None:
    from dejavu.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(
        checkpoint,
        config.eval_set or config.public_set,
        seed=config.seed,
        batch_size=config.batch_size,
        device=config.device,
        progress=config.progress,
    )
    write_json(path, result)


def _write_outputs(out: Path, config, recipe: dict, table: pd.DataFrame, runs):
    with atomic_path(out / "mitigation.csv") as tmp:
        table.to_csv(tmp, index=False)
    rows = [
        {key: _json_value(value) for key, value in row.items()}
        for row in table.to_dict(orient="records")
    ]
    write_json(
        out / "mitigation.json",
        {
            "schema_version": SCHEMA_VERSION,
            "settings": {**recipe, "rates": [float(r) for r in config.rates]},
            "utility_metric": table["utility_metric"].iloc[0],
            "runs": {
                rate_name(rate): {
                    "target": str(runs[(rate_name(rate), "target")]["checkpoint"]),
                    "reference": str(
                        runs[(rate_name(rate), "reference")]["checkpoint"]
                    ),
                    "audit": str(out / "audits" / rate_name(rate)),
                    "utility": str(
                        out / "models" / rate_name(rate) / "target" / "utility.json"
                    ),
                }
                for rate in config.rates
            },
            "versions": package_versions(),
            "rows": rows,
        },
    )
    plot_mitigation(table, out / "mitigation.png")


def _json_value(value):
    # pandas turns a missing interval bound (null with --bootstrap 0) into NaN.
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def plot_mitigation(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Plot memorization against zero-shot utility, one point per rate.

    Memorization is the member-minus-control PRG at the largest k, with its
    bootstrap interval as error bars, or the members' PRG when the table has no
    ``difference`` rows.

    Parameters
    ----------
    table : pandas.DataFrame
        A mitigation table as :func:`mitigation_table` returns.
    path : path-like
        PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = int(table["k"].max())
    record_set = "difference" if (table["set"] == "difference").any() else "members"
    rows = table[(table["k"] == k) & (table["set"] == record_set)].sort_values("rate")
    # A missing bound (--bootstrap 0) draws no bar.
    low = (rows["prg"] - rows["prg_ci_low"]).fillna(0.0)
    high = (rows["prg_ci_high"] - rows["prg"]).fillna(0.0)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(
        rows["zero_shot"],
        rows["prg"],
        yerr=[low.to_numpy(), high.to_numpy()],
        marker="o",
        linestyle="-",
        capsize=3,
    )
    for _, row in rows.iterrows():
        ax.annotate(
            f"ρ={row['rate']:g}",
            (row["zero_shot"], row["prg"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=9,
        )
    ax.axhline(0, color="0.5", linewidth=0.8)
    metric = str(rows["utility_metric"].iloc[0]).replace("_", " ")
    quantity = "member − control PRG" if record_set == "difference" else "member PRG"
    ax.set_xlabel(f"zero-shot utility ({metric})")
    ax.set_ylabel(f"{quantity}, k={k}")
    ax.set_title("Text randomization: memorization against utility")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def format_table(table: pd.DataFrame, sets: Sequence[str] | None = None) -> str:
    """Return the table as Markdown: intervals for PPG, PRG and AUCG, and utility.

    Parameters
    ----------
    table : pandas.DataFrame
        A mitigation table as :func:`mitigation_table` returns.
    sets : sequence of str, optional
        Record sets to show; all when omitted.
    """
    metric = table["utility_metric"].iloc[0] if len(table) else ""
    metric = metric.replace("_", " ")
    lines = [
        f"| ρ | set | k | PPG | PRG | AUCG | zero-shot {metric} "
        f"| linear-probe {metric} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        if sets is not None and row["set"] not in sets:
            continue
        cells = [_interval_text(row, m) for m in METRICS]
        lines.append(
            f"| {row['rate']:g} | {row['set']} | {row['k']} | "
            + " | ".join(cells)
            + f" | {row['zero_shot']:.3f} | {row['linear_probe']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _interval_text(row, metric: str) -> str:
    low, high = row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if pd.isna(low) or pd.isna(high):
        return f"{row[metric]:+.3f}"
    return f"{row[metric]:+.3f} [{low:+.3f}, {high:+.3f}]"
