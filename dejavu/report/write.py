"""Write the report files of a run: report.html, summary.md and memorized.csv.

``memorized.csv`` and ``summary.md`` name records by id only, whatever the redaction
mode of the HTML report, so they can go into a ticket or a removal pipeline without
carrying captions or images.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from dejavu._io import atomic_path, write_text
from dejavu.errors import InputError, OutputDirError
from dejavu.report.html import (
    METRIC_MEANINGS,
    ONE_MODEL_WARNING,
    REDACT_MODES,
    render_comparison,
    render_report,
)
from dejavu.report.run import Run, load_run
from dejavu.report.verdict import decide

log = logging.getLogger(__name__)

MEMORIZED_COLUMNS = [
    "rank",
    "id",
    "k",
    "recall_gap",
    "precision_gap",
    "correct_gap",
    "target_recall",
    "reference_recall",
    "target_precision",
    "reference_precision",
    "target_correct",
    "reference_correct",
    "min_dist",
]
SUMMARY_TOP_RECORDS = 10


def write_report(
    run_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    redact: str = "blur",
    gallery_size: int = 12,
    progress: bool = False,
) -> Path:
    """Write the review report of a run and its companion files.

    Parameters
    ----------
    run_dir : path-like
        The audit run folder.
    out : path-like, optional
        Path of the HTML file, or a folder to write ``report.html`` into. Defaults to
        ``RUN_DIR/report.html``. ``summary.md`` and ``memorized.csv`` are written
        into the same folder as the HTML file.
    redact : {"blur", "ids", "none"}, default="blur"
        ``blur`` blurs training images and keeps captions; ``ids`` shows no
        training image, caption or object label, only record ids, and no image
        data at all; ``none`` shows training images and captions unchanged.
    gallery_size : int, default=12
        Member records shown in the gallery (those with the largest recall gap).
    progress : bool, default=False
        Show a progress bar while gallery images load.

    Returns
    -------
    pathlib.Path
        The HTML file written.

    Raises
    ------
    InputError
        If ``run_dir`` is not a readable run or an option is invalid.
    OutputDirError
        If the output folder cannot be written.
    """
    if redact not in REDACT_MODES:
        raise InputError(
            f"redaction mode {redact!r} is invalid; "
            f"use one of {', '.join(REDACT_MODES)}"
        )
    if gallery_size < 0:
        raise InputError(f"gallery size must be 0 or more, got {gallery_size}")
    run = load_run(run_dir)
    html_path = _html_path(out, default=run.path / "report.html")
    folder = html_path.parent
    log.info("writing the report of %s to %s", run.path, html_path)
    html = render_report(
        run, redact=redact, gallery_size=gallery_size, progress=progress
    )
    ranked = run.ranked_by_recall_gap()
    try:
        write_text(html_path, html)
        write_text(folder / "summary.md", render_summary_markdown(run, ranked))
        with atomic_path(folder / "memorized.csv") as tmp:
            memorized = ranked.assign(k=run.largest_k)
            memorized[MEMORIZED_COLUMNS].round(6).to_csv(tmp, index=False)
    except OSError as err:
        raise OutputDirError(
            f"cannot write the report into {folder}: {err}; choose a folder you can "
            "write to with --out"
        ) from err
    return html_path


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write one HTML page that compares several runs side by side.

    Parameters
    ----------
    run_dirs : sequence of path-like
        Audit run folders, in the order to show (for example increasing
        text-randomization rate, or checkpoints in training order).
    out : path-like
        The HTML file to write, or a folder to write ``comparison.html`` into.
    labels : sequence of str, optional
        One label per run; defaults to the folder names, or the full paths when two
        folders share a name.

    Returns
    -------
    pathlib.Path
        The HTML file written.
    """
    if not run_dirs:
        raise InputError("no run folders given to compare; pass at least one")
    runs = [load_run(path) for path in run_dirs]
    if labels is None:
        names = [run.path.name for run in runs]
        unique = len(set(names)) == len(names)
        labels = names if unique else [str(run.path) for run in runs]
    if len(labels) != len(runs):
        raise InputError(f"got {len(labels)} labels for {len(runs)} runs")
    html_path = _html_path(out, default=None, folder_name="comparison.html")
    try:
        write_text(html_path, render_comparison(runs, list(labels)))
    except OSError as err:
        raise OutputDirError(f"cannot write {html_path}: {err}") from err
    return html_path


def render_summary_markdown(run: Run, ranked=None) -> str:
    """Return a Markdown summary of a run for a review ticket.

    It states the verdict and its rule, the headline figures, the scale, the inputs,
    the settings and the ids of the records with the largest recall gap.
    """
    verdict = decide(run)
    k = run.largest_k
    results = run.results()
    if ranked is None:
        ranked = run.ranked_by_recall_gap(k)
    level = float((run.summary.get("settings") or {}).get("ci_level", 0.95))
    lines = [
        f"# Déjà vu memorization audit: {_md(run.path.name)}",
        "",
        f"**Verdict: {verdict.headline}.** {_md(verdict.evidence)}",
        "",
        f"Rule: {_md(verdict.rule)}",
        "",
    ]
    if run.test == "one-model":
        lines += [f"> {ONE_MODEL_WARNING}", ""]
    sets = [
        s for s in ("members", "control", "difference") if (results["set"] == s).any()
    ]
    lines += [
        f"## Scores at k = {k}",
        "",
        f"Target minus reference, with {level:.0%} bootstrap intervals.",
        "",
        "| metric | " + " | ".join(_set_label(s) for s in sets) + " | meaning |",
        "|---" * (len(sets) + 2) + "|",
    ]
    for metric in ("ppg", "prg", "aucg"):
        cells = []
        for record_set in sets:
            row = results[(results["set"] == record_set) & (results["k"] == k)]
            cells.append("n/a" if row.empty else _interval(row.iloc[0], metric))
        lines.append(
            f"| {metric.upper()} | "
            + " | ".join(cells)
            + f" | {METRIC_MEANINGS[metric]} |"
        )
    lines += ["", "## Scale", ""]
    for record_set, entry in (run.summary.get("counts") or {}).items():
        if isinstance(entry, dict):
            lines.append(
                f"- {_md(_set_label(str(record_set)))}: {entry.get('records')} rows "
                f"read, {entry.get('scored')} scored, "
                f"{entry.get('excluded_no_objects')} excluded for having no objects, "
                f"{entry.get('skipped_bad')} skipped as bad rows"
            )
    settings = run.summary.get("settings") or {}
    lines.append(
        f"- k grid {run.k_values}; {settings.get('bootstrap')} bootstrap resamples; "
        f"seed {settings.get('seed')}"
    )
    lines += ["", "## Models and data", ""]
    for name, entry in (run.summary.get("inputs") or {}).items():
        if not isinstance(entry, dict):
            continue
        details = [f"`{_code(entry.get('path'))}`"]
        if entry.get("sha256"):
            details.append(f"sha256 `{_code(str(entry['sha256'])[:16])}`")
        for key in ("size_bytes", "records", "architecture", "embed_dim"):
            if entry.get(key) is not None:
                details.append(f"{key} {_md(str(entry[key]))}")
        lines.append(f"- {_md(str(name))}: " + ", ".join(details))
    lines += ["", "## Settings", ""]
    lines += [
        f"- {_md(str(key))}: `{_code(json.dumps(value, default=str))}`"
        for key, value in settings.items()
    ]
    lines += [
        "",
        f"## Records with the largest recall gap at k = {k}",
        "",
        "Ids only; the full ranking is in `memorized.csv`.",
        "",
        "| rank | id | recall gap | precision gap |",
        "|---|---|---|---|",
    ]
    for _, row in ranked.head(SUMMARY_TOP_RECORDS).iterrows():
        lines.append(
            f"| {int(row['rank'])} | `{_code(row['id'])}` | {row['recall_gap']:+.3f} "
            f"| {row['precision_gap']:+.3f} |"
        )
    lines += ["", "Files: `report.html` (the review report), `memorized.csv`.", ""]
    return "\n".join(lines)


def _html_path(out, *, default: Path | None, folder_name: str = "report.html") -> Path:
    if out is None:
        if default is None:
            raise InputError("an output file is required; pass --out FILE")
        return default
    # Test the text for a trailing separator first, because Path() drops it.
    if os.fspath(out).endswith(os.sep) or Path(out).is_dir():
        return Path(out) / folder_name
    return Path(out)


def _set_label(record_set: str) -> str:
    return {"difference": "members − control"}.get(record_set, record_set)


def _interval(row, name: str) -> str:
    value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    try:
        return f"{float(value):+.3f} [{float(low):+.3f}, {float(high):+.3f}]"
    except (TypeError, ValueError):
        return "n/a"


# Characters that change inline Markdown; the text never starts a line, so line-start
# markers such as "#", "-" and "1." need no escape.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def _md(text: str) -> str:
    """Escape text for Markdown, including raw HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _code(value) -> str:
    """Make text safe inside a single-backtick code span on one line."""
    text = " ".join(str(value).split())
    return text.replace("`", "'").replace("|", "\\|")
