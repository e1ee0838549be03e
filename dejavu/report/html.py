"""The self-contained HTML review report of one run, and the page comparing runs.

Everything the page needs is inline: the stylesheet, the plots (as SVG markup) and
the gallery images (as JPEG ``data:`` URIs). A Content-Security-Policy in the page
forbids scripts and every network request, and every caption, label, id and path is
HTML-escaped, so a hostile caption shows as text.

Redaction modes for the gallery (the plots and tables are the same in every mode):

- ``blur``: training images blurred beyond recognition, captions and object labels
  shown, public neighbour images shown as they are.
- ``ids``: no image of any kind and no caption or object label of a training record;
  only record ids, counts and public neighbour ids.
- ``none``: training images and captions shown as they are, for internal review.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape
from importlib import resources

import pandas as pd
from tqdm import tqdm

import dejavu
from dejavu.report import images
from dejavu.report.plots import (
    compare_figure,
    figure_to_svg,
    gap_histogram_figure,
    metrics_vs_k_figure,
    survival_figure,
    top_l_figure,
)
from dejavu.report.run import Run
from dejavu.report.verdict import Verdict, decide

REDACT_MODES = ("blur", "ids", "none")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

METRIC_MEANINGS = {
    "ppg": (
        "Population precision gap: the share of records whose objects the target "
        "predicts more precisely than the reference, minus the share where it is "
        "less precise (0 means no difference, range −1 to 1)."
    ),
    "prg": (
        "Population recall gap: the share of records where the target recovers more "
        "of the image's objects from the caption than the reference does, minus the "
        "reverse; above 0 means the target recalls objects its caption does not name."
    ),
    "aucg": (
        "Gap in the area under the per-record recall survival curves (first plot "
        "below), which equals the difference in mean recall between the two models."
    ),
}

ONE_MODEL_WARNING = (
    "This is a one-model test: the reference is a text-only sentence encoder rather "
    "than a second CLIP model trained on other data. The one-model estimate tends to "
    "run high, so it may report somewhat more memorization than a two-model test."
)

OBJECT_MARKS = {
    "target-only": "recovered by the target only",
    "reference-only": "recovered by the reference only",
    "both": "recovered by both",
    "neither": "recovered by neither",
}

NEIGHBOURS_SHOWN = 5
"""Nearest public images shown per model and record in the gallery."""


def render_report(
    run: Run,
    *,
    redact: str = "blur",
    gallery_size: int = 12,
    progress: bool = False,
) -> str:
    """Return the HTML text of the review report of one run.

    Parameters
    ----------
    run : Run
        The loaded run.
    redact : {"blur", "ids", "none"}, default="blur"
        How training records appear in the gallery; see the module docstring.
    gallery_size : int, default=12
        Member records shown in the gallery, those with the largest recall gap at
        the largest k.
    progress : bool, default=False
        Show a progress bar while gallery images are loaded.
    """
    verdict = decide(run)
    k = run.largest_k
    title = f"dejavu audit report: {run.path.name}"
    parts = [
        _head(title),
        "<main>",
        "<header><h1>Déjà vu memorization audit</h1>",
        f'<p class="meta">Run folder <code>{escape(str(run.path))}</code>; '
        f"{escape(run.test)} test; report redaction mode "
        f"<code>{escape(redact)}</code>.</p></header>",
        _verdict_section(run, verdict),
        _scores_section(run, k),
        _scale_section(run),
        _inputs_section(run),
        _settings_section(run),
        _notes_section(run),
        _one_model_section(run),
        _plots_section(run, k),
        _results_section(run, k),
        _gallery_section(run, k, redact, gallery_size, progress),
        _skipped_section(run),
        _footer(run),
        "</main></body></html>",
    ]
    return "\n".join(part for part in parts if part)


def render_comparison(runs: Sequence[Run], labels: Sequence[str]) -> str:
    """Return the HTML text of a page comparing several runs side by side.

    Each run contributes its verdict and its PPG, PRG and AUCG at its largest k,
    for members, control and the member-minus-control difference where scored.
    """
    rows = []
    for run, label in zip(runs, labels, strict=True):
        verdict = decide(run)
        results = run.results()
        k = run.largest_k
        cells = [
            f"<td>{escape(label)}</td>",
            f"<td><code>{escape(str(run.path))}</code></td>",
            f"<td>{escape(run.test)}</td>",
            f'<td class="num">{k}</td>',
            f"<td>{escape(verdict.headline)}</td>",
        ]
        for record_set in ("members", "control", "difference"):
            row = results[(results["set"] == record_set) & (results["k"] == k)]
            for metric in ("ppg", "prg", "aucg"):
                text = "—" if row.empty else _interval_text(row.iloc[0], metric)
                cells.append(f'<td class="num">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    header = ["run", "folder", "test", "k", "verdict"]
    for record_set in ("members", "control", "members − control"):
        header += [f"{record_set} {name}" for name in ("PPG", "PRG", "AUCG")]
    figure = compare_figure(runs, labels)
    parts = [
        _head("dejavu: comparison of audit runs"),
        "<main><header><h1>Comparison of déjà vu audit runs</h1>",
        f'<p class="meta">{len(runs)} runs. Figures are at each run\'s largest k '
        "with their confidence intervals. Each run's verdict follows the rule on its "
        "own report.</p></header>",
        '<h2>Scores</h2><div class="scroll"><table><thead><tr>'
        + "".join(f"<th>{escape(name)}</th>" for name in header)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>",
        "<h2>Plots</h2>",
        _figure(
            figure,
            "compare",
            "PPG, PRG and AUCG per run (member-minus-control where a control set "
            "was scored, members otherwise), with confidence intervals.",
        ),
        _footer(runs[0]) if runs else "",
        "</main></body></html>",
    ]
    return "\n".join(part for part in parts if part)


def _head(title: str) -> str:
    css = resources.files("dejavu").joinpath("assets/report/report.css").read_text()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" '
        f'content="{CONTENT_SECURITY_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{css}</style></head><body>"
    )


def _verdict_section(run: Run, verdict: Verdict) -> str:
    state = "detected" if verdict.detected else "clear"
    parts = [
        f'<section class="verdict {state}" id="verdict">',
        f"<h2>{escape(verdict.headline)}</h2>",
        f"<p>{escape(verdict.evidence)}</p>",
        f"<p><strong>Rule:</strong> {escape(verdict.rule)}</p>",
    ]
    if not verdict.uses_control:
        parts.append(
            '<p class="muted">No control set was scored, so the verdict cannot '
            "separate memorization from a target that simply retrieves differently "
            "from the reference; score a control set for the stronger test.</p>"
        )
    parts.append("</section>")
    if run.test == "one-model":
        parts.append(f'<p class="warning">{escape(ONE_MODEL_WARNING)}</p>')
    return "\n".join(parts)


def _scores_section(run: Run, k: int) -> str:
    results = run.results()
    sets = [
        s for s in ("members", "control", "difference") if (results["set"] == s).any()
    ]
    level = _ci_level(run)
    header = "".join(f"<th>{escape(_set_label(s))}</th>" for s in sets)
    body = []
    for metric in ("ppg", "prg", "aucg"):
        cells = []
        for record_set in sets:
            row = results[(results["set"] == record_set) & (results["k"] == k)]
            text = "—" if row.empty else _interval_text(row.iloc[0], metric)
            if not row.empty and metric in ("ppg", "prg"):
                p_value = row.iloc[0][f"{metric}_p_value"]
                if _finite(p_value):
                    text += f"<br><small>sign test p = {_p_text(p_value)}</small>"
            cells.append(f'<td class="num">{text}</td>')
        body.append(
            f"<tr><th>{metric.upper()}</th>{''.join(cells)}"
            f"<td>{escape(METRIC_MEANINGS[metric])}</td></tr>"
        )
    return (
        f'<section id="scores"><h2>Scores at k = {k}</h2>'
        f"<p>Each figure is target minus reference, with its {level:.0%} bootstrap "
        "confidence interval in brackets. Above 0 favours the target.</p>"
        f'<div class="scroll"><table><thead><tr><th>metric</th>{header}'
        f"<th>meaning</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        "</section>"
    )


def _scale_section(run: Run) -> str:
    counts = run.summary.get("counts") or {}
    settings = run.summary.get("settings") or {}
    rows = []
    for record_set in ("members", "control", "public"):
        entry = counts.get(record_set)
        if not isinstance(entry, dict):
            continue
        rows.append(
            f"<tr><th>{escape(_set_label(record_set))}</th>"
            + "".join(
                f'<td class="num">{escape(_plain(entry.get(key)))}</td>'
                for key in ("records", "scored", "excluded_no_objects", "skipped_bad")
            )
            + "</tr>"
        )
    extra = (
        f"<p>k grid {escape(_plain(run.k_values))}; "
        f"{escape(_plain(settings.get('bootstrap')))} bootstrap resamples at the "
        f"{_ci_level(run):.0%} level; seed {escape(_plain(settings.get('seed')))}; "
        f"mode {escape(_plain(settings.get('mode')))}.</p>"
    )
    return (
        '<section id="scale"><h2>Scale of the audit</h2>'
        "<table><thead><tr><th>record set</th><th>rows read</th><th>scored</th>"
        "<th>excluded (no objects)</th><th>skipped (bad rows)</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{extra}</section>"
    )


def _inputs_section(run: Run) -> str:
    inputs = run.summary.get("inputs") or {}
    rows = []
    for name, entry in inputs.items():
        if not isinstance(entry, dict):
            rows.append(
                f"<tr><th>{escape(str(name))}</th>"
                f'<td colspan="4">{escape(_plain(entry))}</td></tr>'
            )
            continue
        sha = str(entry.get("sha256") or "")
        size = entry.get("size_bytes")
        detail = []
        for key in ("architecture", "embed_dim", "records"):
            if entry.get(key) is not None:
                detail.append(f"{key} {entry[key]}")
        rows.append(
            f"<tr><th>{escape(str(name))}</th>"
            f"<td><code>{escape(_plain(entry.get('path')))}</code></td>"
            f'<td><code title="{escape(sha)}">{escape(sha[:16])}</code></td>'
            f'<td class="num">{escape(_size_text(size))}</td>'
            f"<td>{escape(', '.join(detail))}</td></tr>"
        )
    return (
        '<section id="inputs"><h2>Models and data compared</h2>'
        "<table><thead><tr><th>input</th><th>path</th><th>SHA-256 (first 16)</th>"
        "<th>size</th><th>details</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _settings_section(run: Run) -> str:
    settings = run.summary.get("settings") or {}
    rows = "".join(
        f"<tr><th>{escape(str(key))}</th><td><code>{escape(_plain(value))}</code></td></tr>"
        for key, value in settings.items()
    )
    return (
        '<section id="settings"><h2>Settings</h2>'
        f"<table><tbody>{rows}</tbody></table></section>"
    )


def _notes_section(run: Run) -> str:
    notes = run.summary.get("notes") or []
    if not notes:
        return ""
    items = "".join(f"<li>{escape(str(note))}</li>" for note in notes)
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'


def _one_model_section(run: Run) -> str:
    extra = run.summary.get("one_model")
    if not extra:
        return ""
    results = run.results(one_model=True)
    parts = [
        '<section id="one-model"><h2>One-model test on the same records</h2>',
        f'<p class="warning">{escape(ONE_MODEL_WARNING)}</p>',
    ]
    encoder = extra.get("reference") if isinstance(extra, dict) else None
    if isinstance(encoder, dict):
        parts.append(
            "<p>Text-only reference: "
            f"<code>{escape(_plain(encoder.get('architecture')))}</code> from "
            f"<code>{escape(_plain(encoder.get('path')))}</code>.</p>"
        )
    parts.append(_results_table(results))
    if not results.empty:
        parts.append(
            _figure(
                metrics_vs_k_figure(
                    run, ("members", "control", "difference"), one_model=True
                ),
                "onemodel",
                "PPG, PRG and AUCG of the one-model test against k.",
            )
        )
    agreement = extra.get("agreement") if isinstance(extra, dict) else None
    if agreement:
        parts.append("<h3>Agreement between the two tests</h3>")
        parts.append(_agreement_table(agreement))
    parts.append("</section>")
    return "\n".join(parts)


def _agreement_table(agreement) -> str:
    if not isinstance(agreement, list):
        return _key_value_table(agreement)
    rows = []
    for entry in agreement:
        if not isinstance(entry, dict):
            continue
        overlaps = "; ".join(
            f"top {_plain(item.get('fraction'))} (L = {_plain(item.get('l'))}): "
            f"{_plain(item.get('overlap'))}"
            for item in entry.get("top_l_overlap") or []
            if isinstance(item, dict)
        )
        rows.append(
            f'<tr><td class="num">{escape(_plain(entry.get("k")))}</td>'
            f"<td>{escape(_plain(entry.get('set')))}</td>"
            f'<td class="num">{_number_text(entry.get("spearman"))}</td>'
            f'<td class="num">{_p_text(entry.get("spearman_p_value"))}</td>'
            f"<td>{escape(overlaps)}</td></tr>"
        )
    return (
        "<p>Spearman correlation of the per-record recall gaps of the two tests, and "
        "the share of the two-model test's top L records (gap ranking) that the "
        "one-model test also ranks in its top L.</p>"
        "<table><thead><tr><th>k</th><th>set</th><th>Spearman</th><th>p</th>"
        f"<th>top-L overlap</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _plots_section(run: Run, k: int) -> str:
    parts = [
        '<section id="plots"><h2>Plots</h2>',
        _figure(
            survival_figure(run, k),
            "survival",
            "Survival curves of per-record recall: the fraction of records whose "
            "recall is at least t. The area under each curve is the model's mean "
            "recall; AUCG is the target's area minus the reference's.",
        ),
        _figure(
            gap_histogram_figure(run, k),
            "gaps",
            "Distribution of per-record precision and recall gaps (target minus "
            "reference). Mass right of 0 is records where the target does better.",
        ),
        _figure(
            top_l_figure(run, k),
            "topl",
            "Top-L gaps against L for each ranking of the members. The gap ranking "
            "selects records on the gap it measures, so its figures are inflated.",
        ),
        _figure(
            metrics_vs_k_figure(run, ("members",)),
            "metrics",
            "PPG, PRG and AUCG of the members against k, with confidence intervals.",
        ),
    ]
    if run.has_control:
        parts.append(
            _figure(
                metrics_vs_k_figure(run, ("members", "control", "difference")),
                "control",
                "Members against control: the control set was seen by neither "
                "model, so its gap measures how differently the two models retrieve; "
                "the member-minus-control difference is the memorization estimate.",
            )
        )
    parts.append("</section>")
    return "\n".join(parts)


def _results_section(run: Run, k: int) -> str:
    top_l = run.top_l()
    top_l = top_l[top_l["k"] == k]
    rows = []
    for _, row in top_l.iterrows():
        ranking = str(row["ranking"])
        if row["inflated"]:
            ranking += " (inflated)"
        warning = row["warning"] if isinstance(row["warning"], str) else ""
        rows.append(
            f"<tr><td>{escape(_set_label(str(row['set'])))}</td>"
            f"<td>{escape(ranking)}</td>"
            f'<td class="num">{escape(_plain(row["fraction"]))}</td>'
            f'<td class="num">{escape(_plain(row["l"]))}</td>'
            + "".join(
                f'<td class="num">{_interval_text(row, gap)}</td>'
                for gap in ("precision_gap", "recall_gap", "f_gap")
            )
            + f"<td>{escape(warning)}</td></tr>"
        )
    return (
        '<section id="results"><h2>All results</h2>'
        + _results_table(run.results())
        + f"<h3>Top-L gaps at k = {k}</h3>"
        "<p>Records are ranked once on all records; L = max(1, ⌊N·fraction⌋). "
        "<code>min_dist</code> is the ranking an adversary can compute.</p>"
        '<div class="scroll"><table><thead><tr><th>set</th><th>ranking</th>'
        "<th>fraction</th><th>L</th><th>precision gap</th><th>recall gap</th>"
        "<th>F-score gap</th><th>warning</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _results_table(results: pd.DataFrame) -> str:
    rows = []
    for _, row in results.iterrows():
        rows.append(
            f"<tr><td>{escape(_set_label(str(row['set'])))}</td>"
            f'<td class="num">{int(row["k"])}</td>'
            f'<td class="num">{escape(_plain(row["n"]))}</td>'
            + "".join(
                f'<td class="num">{_interval_text(row, metric)}</td>'
                for metric in ("ppg", "prg", "aucg")
            )
            + "".join(
                f'<td class="num">{_p_text(row[f"{metric}_p_value"])}</td>'
                for metric in ("ppg", "prg")
            )
            + "</tr>"
        )
    return (
        '<div class="scroll"><table><thead><tr><th>set</th><th>k</th><th>n</th>'
        "<th>PPG</th><th>PRG</th><th>AUCG</th><th>PPG p</th><th>PRG p</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _gallery_section(
    run: Run, k: int, redact: str, gallery_size: int, progress: bool
) -> str:
    ranked = run.ranked_by_recall_gap(k).head(gallery_size)
    records = run.records.assign(id=run.records["id"].astype(str))
    records = records[records["set"] == "members"].set_index("id")
    public = run.public.assign(id=run.public["id"].astype(str)).set_index("id")
    cache: dict[str, str | None] = {}
    cards = []
    for _, gap_row in tqdm(
        ranked.iterrows(), total=len(ranked), disable=not progress, desc="gallery"
    ):
        record = records.loc[gap_row["id"]]
        if isinstance(record, pd.DataFrame):
            record = record.iloc[0]
        cards.append(_record_card(record, gap_row, k, redact, public, cache))
    neighbours_shown = min(k, NEIGHBOURS_SHOWN)
    intro = (
        f"<p>The {len(ranked)} member records with the largest recall gap at k = {k}, "
        "largest first. Each object of the training image is marked by which model "
        f"recovered it from the caption among its {k} nearest public images; the "
        f"{neighbours_shown} nearest of those are shown per model.</p>"
    )
    if redact == "blur":
        intro += "<p>Training images are blurred so they cannot be recognised.</p>"
    elif redact == "ids":
        intro += (
            "<p>Redacted to record ids: no training image, caption or object label "
            "is shown, and no image of any kind.</p>"
        )
    legend = "".join(
        f'<span class="mark {css}">{escape(text)}</span>'
        for css, text in OBJECT_MARKS.items()
    )
    return (
        '<section id="gallery"><h2>Gallery: records with the largest recall gap</h2>'
        f'{intro}<div class="legend">{legend}</div>'
        f'<div class="gallery">{"".join(cards)}</div></section>'
    )


def _object_marks(record, k: int) -> dict[str, str]:
    """Map each ground-truth object of a record to the models that recovered it."""
    target_predicted = set(map(str, _as_list(record.get(f"target_k{k}_predicted"))))
    reference_predicted = set(
        map(str, _as_list(record.get(f"reference_k{k}_predicted")))
    )
    marks = {}
    for label in map(str, _as_list(record.get("objects"))):
        in_target = label in target_predicted
        in_reference = label in reference_predicted
        if in_target and in_reference:
            marks[label] = "both"
        elif in_target:
            marks[label] = "target-only"
        elif in_reference:
            marks[label] = "reference-only"
        else:
            marks[label] = "neither"
    return marks


def _record_card(record, gap_row, k, redact, public, cache) -> str:
    marks = _object_marks(record, k)
    header = (
        f"<h3>#{int(gap_row['rank'])} <code>{escape(str(gap_row['id']))}</code></h3>"
        f"<p>recall gap {_signed(gap_row['recall_gap'])} (target "
        f"{gap_row['target_recall']:.2f}, reference {gap_row['reference_recall']:.2f});"
        f" precision gap {_signed(gap_row['precision_gap'])}; correct objects "
        f"{int(gap_row['target_correct'])} against "
        f"{int(gap_row['reference_correct'])}.</p>"
    )
    if redact == "ids":
        return _ids_only_card(record, header, marks)

    image = _training_image(record, redact, cache)
    caption = escape(str(record.get("caption") or ""))
    items = "".join(
        f'<li class="{mark}">{escape(label)} <small>{escape(OBJECT_MARKS[mark])}'
        "</small></li>"
        for label, mark in marks.items()
    )
    neighbour_blocks = "".join(
        f"<div><h4>{model}'s nearest public images</h4>"
        + _neighbour_strip(_neighbours(record, model), public, cache)
        + "</div>"
        for model in ("target", "reference")
    )
    return (
        f'<article class="record"><div class="train">{image}'
        f'<p class="caption">{caption}</p></div>'
        f'<div>{header}<ul class="objects">{items}</ul>'
        f'<div class="models">{neighbour_blocks}</div></div>'
        "</article>"
    )


def _ids_only_card(record, header: str, marks: dict[str, str]) -> str:
    # Counts per mark, never the labels: the labels describe the training image.
    counts = {css: 0 for css in OBJECT_MARKS}
    for mark in marks.values():
        counts[mark] += 1
    summary = "; ".join(f"{counts[css]} {text}" for css, text in OBJECT_MARKS.items())
    neighbour_ids = "".join(
        f"<p><strong>{model}</strong> nearest public ids: "
        + ", ".join(
            f"<code>{escape(public_id)}</code>"
            for public_id in _neighbours(record, model)[:NEIGHBOURS_SHOWN]
        )
        + "</p>"
        for model in ("target", "reference")
    )
    return (
        f'<article class="record ids-only"><div>{header}'
        f"<p>{len(marks)} objects in the image: {escape(summary)}.</p>"
        f"{neighbour_ids}</div></article>"
    )


def _training_image(record, redact: str, cache: dict) -> str:
    ref = str(record.get("image") or "")
    key = f"{redact}:{ref}"
    if key not in cache:
        image = images.load_image(ref) if ref else None
        if image is None:
            cache[key] = None
        elif redact == "blur":
            cache[key] = images.to_data_uri(images.blur(image))
        else:
            cache[key] = images.to_data_uri(
                images.thumbnail(image, images.THUMBNAIL_SIZE)
            )
    uri = cache[key]
    if uri is None:
        return '<div class="placeholder">training image not found</div>'
    alt = "training image, blurred" if redact == "blur" else "training image"
    return f'<img src="{uri}" alt="{alt}">'


def _neighbour_strip(neighbour_ids: list[str], public, cache: dict) -> str:
    figures = []
    for public_id in neighbour_ids[:NEIGHBOURS_SHOWN]:
        if public_id in public.index:
            entry = public.loc[public_id]
            if isinstance(entry, pd.DataFrame):
                entry = entry.iloc[0]
            ref = str(entry.get("image") or "")
            caption = entry.get("caption")
            labels = ", ".join(map(str, _as_list(entry.get("objects"))))
        else:
            ref, caption, labels = "", None, ""
        key = f"public:{ref}"
        if key not in cache:
            image = images.load_image(ref) if ref else None
            cache[key] = (
                None
                if image is None
                else images.to_data_uri(images.thumbnail(image, images.NEIGHBOUR_SIZE))
            )
        uri = cache[key]
        tooltip = escape(
            " — ".join(str(part) for part in (caption, labels) if part), quote=True
        )
        picture = (
            f'<img src="{uri}" alt="public image {escape(public_id, quote=True)}">'
            if uri
            else '<div class="placeholder">not found</div>'
        )
        figures.append(
            f'<figure title="{tooltip}">{picture}'
            f"<figcaption>{escape(public_id)}<br>{escape(labels)}</figcaption></figure>"
        )
    return f'<div class="neighbours">{"".join(figures)}</div>'


def _skipped_section(run: Run) -> str:
    skipped = run.summary.get("skipped") or []
    if not skipped:
        return ""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(_plain(entry.get(key)))}</td>"
            for key in ("set", "file", "row", "id", "reason")
        )
        + "</tr>"
        for entry in skipped
        if isinstance(entry, dict)
    )
    return (
        f'<section id="skipped"><h2>Skipped rows ({len(skipped)})</h2>'
        '<div class="scroll"><table><thead><tr><th>set</th><th>file</th><th>row</th>'
        f"<th>id</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></div>"
        "</section>"
    )


def _footer(run: Run) -> str:
    versions = run.summary.get("versions") or {}
    text = ", ".join(f"{name} {value}" for name, value in versions.items())
    return (
        f"<footer>Report written by dejavu {escape(dejavu.__version__)}. "
        f"Audit run with {escape(text)}.</footer>"
    )


def _figure(fig, salt: str, caption: str) -> str:
    svg = figure_to_svg(fig, salt)
    return (
        f'<figure class="plot">{svg}<figcaption>{escape(caption)}</figcaption></figure>'
    )


def _key_value_table(value) -> str:
    if isinstance(value, dict):
        rows = "".join(
            f"<tr><th>{escape(str(key))}</th><td><code>{escape(_plain(item))}</code>"
            "</td></tr>"
            for key, item in value.items()
        )
        return f"<table><tbody>{rows}</tbody></table>"
    return f"<p><code>{escape(_plain(value))}</code></p>"


def _neighbours(record, model: str) -> list[str]:
    return [str(n) for n in _as_list(record.get(f"{model}_neighbours"))]


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return list(value)
    except TypeError:
        return []


def _set_label(record_set: str) -> str:
    return {"difference": "members − control"}.get(record_set, record_set)


def _ci_level(run: Run) -> float:
    return float((run.summary.get("settings") or {}).get("ci_level", 0.95))


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _number_text(value) -> str:
    return f"{float(value):.3f}" if _finite(value) else "—"


def _signed(value) -> str:
    return f"{float(value):+.3f}" if _finite(value) else "n/a"


def _interval_text(row, name: str) -> str:
    value, low, high = row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if not _finite(value):
        return "n/a"
    text = f"{float(value):+.3f}"
    if _finite(low) and _finite(high):
        text += f" [{float(low):+.3f}, {float(high):+.3f}]"
    return text


def _p_text(value) -> str:
    if not _finite(value):
        return "—"
    value = float(value)
    return f"{value:.1e}" if value < 1e-4 else f"{value:.4f}"


def _plain(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | tuple | bool):
        return json.dumps(value, default=str)
    return str(value)


def _size_text(size) -> str:
    if not _finite(size):
        return "—"
    size = float(size)
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
