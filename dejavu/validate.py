"""The planted-memorization check: does the audit find memorization where it is?

On generated scenes, where the truth is known, :func:`run_validation` trains the
models of four cases and audits each one:

1. **members**: a target trained for many epochs on the audited records, against a
   reference trained on a disjoint set of the same size. Expected: member PRG at the
   largest k with its interval above 0, and member-minus-control PRG above 0.
2. **non-members**: a target trained on other records of the same distribution, so
   the audited records are unseen by both models. Expected: |PPG| and |PRG| below
   0.1 at every k of at least 5.
3. **text randomization**: case 1 with captions randomized at rate ρ, against a
   reference trained with the same ρ. Expected: member-minus-control PRG at most
   half that of case 1.
4. **canaries**: a second target trains on the target set in which some records,
   each with an unmentioned object that is rare in the target set, are repeated.
   Expected: their recall gaps exceed the other members' (one-sided Mann-Whitney
   test, p below 0.01). Its reference is the one of case 1.

Cases 1 and 4 use separate targets, so the members case measures plain training
and the canaries' extra passes do not enter it. It also gives case 4 its controls
(:func:`canary_controls`): the same canaries in a target trained without repeats.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dejavu._io import (
    StageRecords,
    atomic_path,
    prepare_run_dir,
    write_json,
    write_text,
)
from dejavu.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class ValidationSettings:
    """Sizes and recipe of the validity check; the defaults are the documented run."""

    n_records: int = 500  # records per split: target, reference, control, other
    n_public: int = 5000  # public images
    epochs: int = 40  # passes over the training records, enough to memorize
    batch_size: int = 64
    model: str = "dejavu-tiny-vit"
    text_mask_rate: float = 0.5  # rho of case 3
    n_canaries: int = 20
    canary_repeats: int = 5  # times each canary appears per epoch
    k: tuple[int, ...] = (1, 5, 10)
    bootstrap: int = 1000
    seed: int = 0
    device: str = "auto"
    jobs: int = 2  # models trained at once, one CPU thread each


@dataclass
class Check:
    """One expectation of the validity check and what was measured."""

    case: str
    expectation: str
    measured: str
    passed: bool


# Models of the validity check: name -> (training manifest under the run folder,
# whether captions are randomized at the text-randomization rate).
MODELS = {
    "target": ("scenes/target.parquet", False),
    "reference": ("scenes/reference.parquet", False),
    "target_other": ("other/target.parquet", False),
    "target_rho": ("scenes/target.parquet", True),
    "reference_rho": ("scenes/reference.parquet", True),
    "target_canaries": ("scenes/target_canaries.parquet", False),
}

# Audits of the validity check: case -> (target model, reference model, audited
# records under the run folder).
AUDITS = {
    "members": ("target", "reference", "scenes/target.parquet"),
    "non_members": ("target_other", "reference", "scenes/target.parquet"),
    "text_randomization": ("target_rho", "reference_rho", "scenes/target.parquet"),
    "canaries": ("target_canaries", "reference", "scenes/target_canaries.parquet"),
}


def run_validation(
    out: str | os.PathLike,
    settings: ValidationSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Check]:
    """Train and audit the four cases, then write ``validation.json`` and ``.md``.

    Parameters
    ----------
    out : path-like
        Run folder; stages finished by an earlier run with the same settings are
        skipped.
    settings : ValidationSettings, optional
        Sizes and recipe; the defaults when omitted.
    overwrite : bool, default=False
        Replace a folder written with other settings.
    progress : bool, default=True
        Show progress bars.

    Returns
    -------
    list of Check
        One entry per expectation, in case order.
    """
    from dejavu.audit import AuditConfig, run_audit

    settings = settings or ValidationSettings()
    checkpoints = prepare_models(out, settings, overwrite=overwrite, progress=progress)
    out = Path(out)
    stages = StageRecords(out)
    recipe = _audit_recipe(settings)
    scenes = out / "scenes"
    runs = {}
    for case, (target, reference, records) in AUDITS.items():
        run_dir = out / "audits" / case
        config = AuditConfig(
            target=str(checkpoints[target]),
            reference=str(checkpoints[reference]),
            target_set=str(out / records),
            control_set=str(scenes / "control.parquet"),
            public_set=str(scenes / "public.parquet"),
            out=str(run_dir),
            k=list(settings.k),
            bootstrap=settings.bootstrap,
            seed=settings.seed,
            device=settings.device,
            progress=progress,
            write_report=False,
            overwrite=True,
        )
        stages.run(
            f"audit-{case}",
            recipe,
            lambda config=config: run_audit(config),
            outputs=[run_dir / "summary.json", run_dir / "records.parquet"],
        )
        runs[case] = run_dir

    canary_manifest = scenes / "target_canaries.parquet"
    checks = evaluate_checks(runs, settings, canary_manifest)
    controls = canary_controls(runs, settings, canary_manifest)
    _write_outputs(out, settings, checks, controls, runs)
    return checks


def prepare_models(
    out: str | os.PathLike,
    settings: ValidationSettings | None = None,
    *,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Generate the scenes of the validity check and train its models.

    The run folder gets ``scenes/`` with the target, reference, control and public
    splits and ``target_canaries.parquet`` (the target split with its canaries
    marked and repeated). It also gets ``other/``, the records of the non-member
    target, and one training folder ``<name>/`` per model, whose final checkpoint
    is ``<name>/checkpoints/epoch_<epochs>.pt``. Finished stages are skipped, so a later
    :func:`run_validation` on the same folder and settings trains only the rest.

    Parameters
    ----------
    out : path-like
        Run folder.
    settings : ValidationSettings, optional
        Sizes and recipe; the defaults when omitted.
    names : sequence of str, optional
        Models to train, from ``MODELS``; all of them when omitted.
    overwrite : bool, default=False
        Replace a folder written with other settings.
    progress : bool, default=True
        Show progress bars while generating scenes.

    Returns
    -------
    dict of str to pathlib.Path
        Final checkpoint of every model in `names`.
    """
    from dejavu.data.scenes import write_scenes
    from dejavu.train import train_clips

    settings = settings or ValidationSettings()
    names = list(MODELS) if names is None else list(dict.fromkeys(names))
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise ValueError(
            f"unknown model {unknown[0]!r}; expected one of {list(MODELS)}"
        )
    _check_settings(settings)
    recipe = _recipe(settings)
    out = prepare_run_dir(out, "validate", recipe, overwrite=overwrite)
    stages = StageRecords(out)
    n, seed = settings.n_records, settings.seed

    # Data: the four splits, and "other" records from a second seed.
    def scenes():
        write_scenes(
            out / "scenes",
            n_target=n,
            n_reference=n,
            n_control=n,
            n_public=settings.n_public,
            seed=seed,
            formats=("manifest",),
            overwrite=True,
            progress=progress,
        )
        write_scenes(
            out / "other",
            n_target=n,
            seed=seed + 1,
            formats=("manifest",),
            overwrite=True,
            progress=progress,
        )
        plant_canaries(
            out / "scenes" / "target.parquet",
            out / "scenes" / "target_canaries.parquet",
            n_canaries=settings.n_canaries,
            repeats=settings.canary_repeats,
            seed=seed,
        )

    manifests = [
        out / "scenes" / f"{split}.parquet"
        for split in ("target", "reference", "control", "public", "target_canaries")
    ]
    manifests.append(out / "other" / "target.parquet")
    stages.run("scenes", recipe, scenes, outputs=manifests)

    # Models train `settings.jobs` at a time, one CPU thread each.
    checkpoints, pending = {}, []
    for name in names:
        folder = out / name
        checkpoints[name] = folder / "checkpoints" / f"epoch_{settings.epochs}.pt"
        if not stages.done(f"train-{name}", recipe, outputs=[checkpoints[name]]):
            pending.append(name)
    runs = []
    for name in pending:
        data, randomized = MODELS[name]
        runs.append(
            {
                "data": out / data,
                "out": out / name,
                "model": settings.model,
                "epochs": settings.epochs,
                "batch_size": settings.batch_size,
                "text_mask_rate": settings.text_mask_rate if randomized else 0.0,
                "seed": seed,
                "device": settings.device,
            }
        )
    train_clips(runs, jobs=settings.jobs)
    for name in pending:
        stages.mark(f"train-{name}", recipe)
    return checkpoints


def _check_settings(settings: ValidationSettings) -> None:
    """Raise InputError for settings that would fail only after scenes are made."""
    from dejavu.train import resolve_device

    n = settings.n_records
    if settings.batch_size > n:
        raise InputError(
            f"batch size {settings.batch_size} is larger than the {n} records per "
            f"split; use at least {settings.batch_size} records or a batch size of "
            f"at most {n}"
        )
    if not 2 <= settings.n_canaries <= n // 2:
        raise InputError(
            f"{settings.n_canaries} canaries cannot be planted among {n} records; "
            f"use between 2 and {n // 2} canaries, so that most members are not "
            "canaries"
        )
    if settings.bootstrap < 1:
        raise InputError(
            f"{settings.bootstrap} bootstrap resamples give no intervals, and the "
            "members check needs one; use at least 1 (1000 by default)"
        )
    resolve_device(settings.device)


# Settings read only by the audits. The run folder's stamp leaves them out, so
# changing them reruns the audits on the trained models without --overwrite.
_AUDIT_SETTINGS = ("k", "bootstrap")


def _recipe(settings: ValidationSettings) -> dict:
    """Return every setting that changes the scenes or the models.

    `jobs` changes only the speed. The model table is part of the recipe, so a
    folder written with other tables is not mistaken for a finished stage.
    """
    excluded = ("jobs", *_AUDIT_SETTINGS)
    recipe = {key: v for key, v in asdict(settings).items() if key not in excluded}
    return {**recipe, "models": MODELS}


def _audit_recipe(settings: ValidationSettings) -> dict:
    """Return the recipe of the audit stages: the models' and the audits' settings."""
    audit_settings = {key: asdict(settings)[key] for key in _AUDIT_SETTINGS}
    return {**_recipe(settings), **audit_settings, "audits": AUDITS}


def plant_canaries(
    source: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    n_canaries: int,
    repeats: int,
    seed: int = 0,
) -> list[str]:
    """Mark records with a rare unmentioned object as canaries repeated in training.

    Writes a copy of the manifest ``source`` to ``dest`` (Parquet) with absolute
    image paths, a ``repeats`` column (``repeats`` for canaries, 1 otherwise) and a
    boolean ``canary`` column.

    Parameters
    ----------
    source, dest : path-like
        Scene manifest to read, Parquet manifest to write.
    n_canaries : int
        Number of canaries.
    repeats : int
        Appearances of each canary per training epoch.
    seed : int, default=0
        Seed of the tie-breaking among equally rare candidates.

    Returns
    -------
    list of str
        Ids of the canaries.
    """
    source = Path(source)
    frame = pd.read_parquet(source)
    frequency = Counter(label for objects in frame["objects"] for label in set(objects))
    # A record's rarity is that of its rarest object the caption does not name.
    rarity = []
    for objects, mentioned in zip(frame["objects"], frame["mentioned"]):
        hidden = set(objects) - set(mentioned)
        rarity.append(min((frequency[o] for o in hidden), default=np.inf))
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(frame)), np.asarray(rarity, dtype=float)))
    canaries = [i for i in order if np.isfinite(rarity[i])][:n_canaries]
    if len(canaries) < n_canaries:
        raise InputError(
            f"{source}: only {len(canaries)} records have an object their caption "
            f"does not name, so {n_canaries} canaries cannot be planted; plant fewer"
        )

    frame = frame.copy()
    frame["image"] = [str((source.parent / p).resolve()) for p in frame["image"]]
    frame["canary"] = False
    frame.loc[canaries, "canary"] = True
    frame["repeats"] = np.where(frame["canary"], repeats, 1)
    with atomic_path(dest) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame.loc[canaries, "id"].tolist()


def evaluate_checks(
    runs: dict[str, Path], settings: ValidationSettings, canary_manifest: Path
) -> list[Check]:
    """Compare the audits of each case with its expectation."""

    def entry(case, set_name, k):
        summary = _read_audit_file(runs[case] / "summary.json")
        return next(
            e for e in summary["results"] if e["set"] == set_name and e["k"] == k
        )

    k_max = max(settings.k)
    checks = []

    prg = entry("members", "members", k_max)["prg"]
    checks.append(
        Check(
            "members",
            f"member PRG at k={k_max} has its interval above 0",
            _interval(prg),
            prg["ci_low"] > 0,
        )
    )
    difference = entry("members", "difference", k_max)["prg"]
    checks.append(
        Check(
            "members",
            f"member-minus-control PRG at k={k_max} above 0",
            _interval(difference),
            difference["value"] > 0,
        )
    )

    for k in [k for k in settings.k if k >= 5]:
        for metric in ("ppg", "prg"):
            value = entry("non_members", "members", k)[metric]
            checks.append(
                Check(
                    "non-members",
                    f"|{metric.upper()}| at k={k} below 0.1",
                    _interval(value),
                    abs(value["value"]) < 0.1,
                )
            )

    randomized = entry("text_randomization", "difference", k_max)["prg"]
    checks.append(
        Check(
            "text randomization",
            f"member-minus-control PRG at k={k_max} with rho={settings.text_mask_rate} "
            f"at most half that of case 1 ({difference['value']:+.3f})",
            _interval(randomized),
            randomized["value"] <= 0.5 * difference["value"],
        )
    )

    test = compare_canaries(runs["canaries"], _canary_ids(canary_manifest), k_max)
    checks.append(
        Check(
            "canaries",
            f"canaries' recall gaps at k={k_max} exceed other members' "
            "(one-sided Mann-Whitney p < 0.01)",
            f"p = {test.p_value:.2g}; mean gap {test.canary_gap:+.3f} "
            f"({test.n_canaries} canaries) vs {test.other_gap:+.3f}",
            bool(test.p_value < 0.01),
        )
    )
    return checks


def canary_controls(
    runs: dict[str, Path], settings: ValidationSettings, canary_manifest: Path
) -> dict[str, CanaryTest]:
    """Separate the canaries' repeats from the choice of records, at the largest k.

    The canaries are chosen for a rare unmentioned object, which can make their
    recall gaps stand out without any repeats. The members-case target trains on
    the same records without repeats, against the same reference, so:

    - ``"without_repeats"`` runs the canary test on the members audit: how far the
      choice of records alone sets the canaries apart;
    - ``"repeats"`` compares each record's recall gap in the canary audit with its
      gap in the members audit: what the repeats add to the canaries, beyond the
      change the other members see between two training runs.
    """
    canaries = _canary_ids(canary_manifest)
    k_max = max(settings.k)
    return {
        "without_repeats": compare_canaries(runs["members"], canaries, k_max),
        "repeats": compare_canaries(
            runs["canaries"], canaries, k_max, baseline=runs["members"]
        ),
    }


def _canary_ids(canary_manifest: Path) -> set:
    planted = pd.read_parquet(canary_manifest, columns=["id", "canary"])
    return set(planted.loc[planted["canary"], "id"])


@dataclass
class CanaryTest:
    """Canaries' recall gaps against the other members' in one audit."""

    p_value: float  # one-sided Mann-Whitney: canaries' values are larger
    canary_gap: float  # canaries' mean recall gap, or its mean change from baseline
    other_gap: float  # the same for the other members
    n_canaries: int


def compare_canaries(
    run_dir: str | os.PathLike,
    canaries: set,
    k: int,
    *,
    baseline: str | os.PathLike | None = None,
) -> CanaryTest:
    """Test whether the canaries' recall gaps at `k` exceed the other members'.

    Parameters
    ----------
    run_dir : path-like
        Audit run folder with ``records.parquet``.
    canaries : set of str
        Ids of the canary records among the members.
    k : int
        Number of neighbours of the recall gaps; one of the audit's k.
    baseline : path-like, optional
        Audit of the same members by a target trained without repeats, against
        the same reference. When given, each record's value is the change of its
        recall gap from the baseline, so the test checks whether the repeats raised
        the canaries' gaps more than the other members', whatever made the
        canaries stand out before. The test assumes that without repeats the two
        targets would differ alike on canaries and other members. Baseline
        records that `run_dir` lacks are ignored.

    Returns
    -------
    CanaryTest

    Raises
    ------
    InputError
        If a canary is not among the scored members, if no other member is, or
        if the baseline lacks a member or used another reference.
    """
    from scipy.stats import mannwhitneyu

    members = _member_recalls(run_dir, k)
    gap = members["target"] - members["reference"]
    if baseline is not None:
        before = _member_recalls(baseline, k).reindex(members.index)
        missing = before.index[before["target"].isna()]
        if len(missing):
            raise InputError(
                f"{baseline}: the baseline audit lacks {len(missing)} members of "
                f"{run_dir}, for example {missing[0]!r}; audit the same records"
            )
        other_reference = before.index[
            ~np.isclose(before["reference"], members["reference"])
        ]
        if len(other_reference):
            raise InputError(
                f"{baseline}: the reference's recall differs from that in {run_dir} "
                f"for {len(other_reference)} members, for example "
                f"{other_reference[0]!r}; audit both targets against the same "
                "reference with the same settings"
            )
        gap = gap - (before["target"] - before["reference"])

    unknown = sorted(set(canaries) - set(members.index))
    if unknown:
        raise InputError(
            f"{run_dir}: {len(unknown)} canary ids are not among the scored members, "
            f"for example {unknown[0]!r}; pass ids of audited records that have "
            "objects"
        )
    is_canary = members.index.isin(canaries)
    if is_canary.all():
        raise InputError(
            f"{run_dir}: every scored member is a canary, so there are no other "
            "members to compare with; plant fewer canaries"
        )
    values = gap.to_numpy()
    test = mannwhitneyu(values[is_canary], values[~is_canary], alternative="greater")
    return CanaryTest(
        p_value=float(test.pvalue),
        canary_gap=float(values[is_canary].mean()),
        other_gap=float(values[~is_canary].mean()),
        n_canaries=int(is_canary.sum()),
    )


def _member_recalls(run_dir, k: int) -> pd.DataFrame:
    """Members' recall at `k` under the target and the reference, indexed by id."""
    records = _read_audit_file(Path(run_dir) / "records.parquet")
    members = records[records["set"] == "members"].set_index("id")
    return pd.DataFrame(
        {
            "target": members[f"target_k{k}_recall"],
            "reference": members[f"reference_k{k}_recall"],
        }
    )


def _read_audit_file(path: Path):
    """Read an audit's ``summary.json`` or ``records.parquet``."""
    import json

    try:
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:
        # pyarrow's ArrowInvalid and json's JSONDecodeError are ValueErrors.
        raise InputError(
            f"{path} cannot be read ({err}); delete it and rerun the command that "
            "wrote it, which recomputes it"
        ) from err


def _interval(value: dict) -> str:
    return f"{value['value']:+.3f} [{value['ci_low']:+.3f}, {value['ci_high']:+.3f}]"


def _write_outputs(out: Path, settings, checks: list[Check], controls, runs) -> None:
    write_json(
        out / "validation.json",
        {
            "settings": asdict(settings),
            "checks": [asdict(c) for c in checks],
            "passed": all(c.passed for c in checks),
            "canary_controls": {name: asdict(t) for name, t in controls.items()},
            "runs": {case: str(path) for case, path in runs.items()},
        },
    )
    k_max = max(settings.k)
    text = format_checks(checks) + "\n" + format_canary_controls(controls, k_max)
    write_text(out / "validation.md", text)


def format_canary_controls(controls: dict[str, CanaryTest], k: int) -> str:
    """Return the canary controls of :func:`canary_controls` as Markdown."""
    plain, repeats = controls["without_repeats"], controls["repeats"]
    return (
        f"Canary controls at k={k} (not checks; one-sided Mann-Whitney, canaries "
        "against the other members):\n\n"
        f"- the same records in the members-case target, trained without repeats: "
        f"p = {plain.p_value:.2g}; mean recall gap {plain.canary_gap:+.3f} vs "
        f"{plain.other_gap:+.3f}. A low p here means these records stand out "
        "without repeats, so a pass of the check cannot be credited to the "
        "repeats.\n"
        f"- change of each record's recall gap from that target to the canary "
        f"target: p = {repeats.p_value:.2g}; mean change {repeats.canary_gap:+.3f} "
        f"vs {repeats.other_gap:+.3f}. A low p here means the repeats raised the "
        "canaries' gaps, if the two training runs would otherwise move canaries "
        "and other members alike.\n"
    )


def format_checks(checks: list[Check]) -> str:
    """Return the checks as a Markdown table."""
    lines = [
        "| case | expectation | measured | result |",
        "|---|---|---|---|",
    ]
    for c in checks:
        result = "pass" if c.passed else "FAIL"
        cells = [c.case, c.expectation, c.measured, result]
        # A bare "|" inside a cell, as in |PPG|, would split it.
        row = " | ".join(cell.replace("|", "\\|") for cell in cells)
        lines.append(f"| {row} |")
    return "\n".join(lines) + "\n"
