"""Matplotlib figures of an audit run, and their conversion to inline SVG.

Every function returns a :class:`matplotlib.figure.Figure`, so notebooks can show it
and the HTML report can embed it with :func:`figure_to_svg`. The report embeds plots
as SVG markup rather than raster images, so a report redacted to ids carries no image
data at all. Figures are created with :class:`matplotlib.figure.Figure` directly,
which needs no GUI backend; pyplot is not used.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from dejavu.report.run import Run

SET_STYLES = {
    "members": {"color": "#c0392b", "label": "members"},
    "control": {"color": "#2471a3", "label": "control"},
    "difference": {"color": "#6c3483", "label": "members − control"},
}
MODEL_STYLES = {
    "target": {"color": "#c0392b", "label": "target"},
    "reference": {"color": "#2471a3", "label": "reference"},
}
RANKING_LABELS = {
    "min_dist": "min_dist",
    "correct": "correct",
    "gap": "gap (inflated by selection)",
}
METRIC_LABELS = {"ppg": "PPG", "prg": "PRG", "aucg": "AUCG"}
GAP_LABELS = {
    "precision_gap": "precision gap",
    "recall_gap": "recall gap",
    "f_gap": "F-score gap",
}


def survival_figure(run: Run, k: int | None = None) -> Figure:
    """Plot the survival curve of per-record recall for target and reference.

    S(t) is the fraction of records with recall at least t. The area under each
    curve is the model's mean recall, and AUCG is the difference of the two areas.
    One panel per scored record set (members, and control when scored).

    Parameters
    ----------
    run : Run
        The loaded run.
    k : int, optional
        Number of neighbours; defaults to the largest k of the run.
    """
    k = run.largest_k if k is None else k
    gaps = run.record_gaps(k)
    sets = [name for name in ("members", "control") if (gaps["set"] == name).any()]
    fig = Figure(figsize=(4.2 * max(1, len(sets)), 3.4), layout="constrained")
    axes = fig.subplots(1, max(1, len(sets)), squeeze=False)[0]
    thresholds = np.linspace(0.0, 1.0, 201)
    for ax, name in zip(axes, sets, strict=False):
        subset = gaps[gaps["set"] == name]
        for model, style in MODEL_STYLES.items():
            recall = np.sort(subset[f"{model}_recall"].to_numpy(dtype=float))
            survival = 1.0 - np.searchsorted(recall, thresholds, side="left") / max(
                1, recall.size
            )
            area = float(recall.mean()) if recall.size else float("nan")
            ax.step(
                thresholds,
                survival,
                where="post",
                color=style["color"],
                label=f"{style['label']} (AUC {area:.3f})",
            )
        ax.set_title(f"{name}, k={k}, n={len(subset)}")
        ax.set_xlabel("recall threshold t")
        ax.set_ylabel("fraction of records with recall ≥ t")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower left", fontsize="small")
        ax.grid(alpha=0.3)
    return fig


def gap_histogram_figure(run: Run, k: int | None = None) -> Figure:
    """Plot the distribution of per-record precision and recall gaps.

    A gap is target minus reference for one record, in [-1, 1]. Records where the
    two models tie sit at 0; PPG and PRG compare the mass on each side of 0.
    """
    k = run.largest_k if k is None else k
    gaps = run.record_gaps(k)
    fig = Figure(figsize=(8.4, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    bins = np.linspace(-1.0, 1.0, 42)
    for ax, column in zip(axes, ("precision_gap", "recall_gap"), strict=True):
        for name in ("members", "control"):
            values = gaps.loc[gaps["set"] == name, column].to_numpy(dtype=float)
            if values.size == 0:
                continue
            ax.hist(
                values,
                bins=bins,
                weights=np.full(values.size, 1.0 / values.size),
                histtype="step",
                linewidth=1.5,
                color=SET_STYLES[name]["color"],
                label=f"{name} (n={values.size})",
            )
        ax.axvline(0.0, color="0.4", linewidth=0.8)
        ax.set_title(f"per-record {GAP_LABELS[column]}, k={k}")
        ax.set_xlabel("target − reference")
        ax.set_ylabel("fraction of records")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return fig


def top_l_figure(run: Run, k: int | None = None, record_set: str = "members") -> Figure:
    """Plot the top-L gaps against L, one line per ranking, with intervals.

    The ``gap`` ranking selects records on the gap it then measures, so its curve is
    inflated by construction and labelled so.
    """
    k = run.largest_k if k is None else k
    table = run.top_l()
    table = table[(table["set"] == record_set) & (table["k"] == k)]
    fig = Figure(figsize=(12.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, gap in zip(axes, GAP_LABELS, strict=True):
        for ranking, rows in table.groupby("ranking", sort=True):
            rows = rows.sort_values("l")
            _errorbar(
                ax,
                rows["l"].to_numpy(dtype=float),
                rows[gap],
                rows[f"{gap}_ci_low"],
                rows[f"{gap}_ci_high"],
                label=RANKING_LABELS.get(str(ranking), str(ranking)),
                linestyle="--" if ranking == "gap" else "-",
            )
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_xscale("log")
        _label_ticks(ax, sorted(set(table["l"].dropna().astype(int))))
        ax.set_title(f"top-L {GAP_LABELS[gap]}, {record_set}, k={k}")
        ax.set_xlabel("L (records)")
        ax.set_ylabel("target − reference")
        ax.grid(alpha=0.3)
        if len(table):
            ax.legend(fontsize="small")
    if not len(table):
        fig.suptitle("no top-L results in this run")
    return fig


def metrics_vs_k_figure(
    run: Run, sets: Sequence[str] = ("members",), *, one_model: bool = False
) -> Figure:
    """Plot PPG, PRG and AUCG against k with their intervals, one line per set.

    Pass ``sets=("members", "control", "difference")`` for the members against
    control picture.
    """
    results = run.results(one_model=one_model)
    fig = Figure(figsize=(12.0, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    offsets = _offsets(len(sets))
    for ax, metric in zip(axes, METRIC_LABELS, strict=True):
        for offset, name in zip(offsets, sets, strict=True):
            rows = results[results["set"] == name].sort_values("k")
            if rows.empty:
                continue
            style = SET_STYLES.get(name, {"color": None, "label": name})
            _errorbar(
                ax,
                rows["k"].to_numpy(dtype=float) * offset,
                rows[metric],
                rows[f"{metric}_ci_low"],
                rows[f"{metric}_ci_high"],
                label=style["label"],
                color=style["color"],
            )
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ks = run.k_values
        if len(ks) > 1 and ks[-1] / max(ks[0], 1) >= 10:
            ax.set_xscale("log")
        _label_ticks(ax, ks)
        ax.set_title(METRIC_LABELS[metric])
        ax.set_xlabel("k (nearest public neighbours)")
        ax.set_ylabel("target − reference")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return fig


def compare_figure(
    runs: Sequence[Run], labels: Sequence[str], record_set: str | None = None
) -> Figure:
    """Plot PPG, PRG and AUCG of several runs side by side at each run's largest k.

    Parameters
    ----------
    runs : sequence of Run
        The runs, in the order to show.
    labels : sequence of str
        One label per run for the x axis.
    record_set : str, optional
        The record set to plot; defaults to ``difference`` for runs that have one
        and ``members`` otherwise, chosen per run.
    """
    fig = Figure(figsize=(12.0, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    positions = np.arange(len(runs), dtype=float)
    for ax, metric in zip(axes, METRIC_LABELS, strict=True):
        values, lows, highs = [], [], []
        for run in runs:
            row = _headline_row(run, record_set)
            values.append(np.nan if row is None else row[metric])
            lows.append(np.nan if row is None else row[f"{metric}_ci_low"])
            highs.append(np.nan if row is None else row[f"{metric}_ci_high"])
        _errorbar(ax, positions, values, lows, highs, color="#6c3483", label=None)
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        ax.set_xticks(positions, list(labels), rotation=30, ha="right")
        ax.set_title(f"{METRIC_LABELS[metric]} at each run's largest k")
        ax.set_ylabel("target − reference")
        ax.grid(alpha=0.3)
    return fig


def figure_to_svg(fig: Figure, salt: str) -> str:
    """Render a figure as an ``<svg>`` element for inline HTML.

    Text stays text (``svg.fonttype: none``), which keeps the markup small and lets
    the browser draw it. ``salt`` makes the SVG's internal ids unique per figure, so
    several figures can share one HTML page, and keeps the output reproducible.
    """
    settings = {
        "svg.fonttype": "none",
        "svg.hashsalt": salt,
        "text.parse_math": False,
    }
    buffer = io.StringIO()
    with matplotlib.rc_context(settings):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _headline_row(run: Run, record_set: str | None):
    results = run.results()
    k = run.largest_k
    if record_set is None:
        record_set = (
            "difference" if (results["set"] == "difference").any() else "members"
        )
    rows = results[(results["set"] == record_set) & (results["k"] == k)]
    return None if rows.empty else rows.iloc[0]


def _errorbar(ax, x, values, lows, highs, *, label, color=None, linestyle="-"):
    values = np.asarray(values, dtype=float)
    lows = np.asarray(lows, dtype=float)
    highs = np.asarray(highs, dtype=float)
    # Missing interval ends draw no bar rather than a bar to NaN.
    below = np.where(np.isfinite(lows), values - lows, 0.0)
    above = np.where(np.isfinite(highs), highs - values, 0.0)
    ax.errorbar(
        x,
        values,
        yerr=np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)]),
        marker="o",
        markersize=4,
        capsize=3,
        label=label,
        color=color,
        linestyle=linestyle,
    )


def _label_ticks(ax, values: Sequence[int]) -> None:
    # Plain labels at the plotted values: the default log-axis labels are mathtext,
    # which the report turns off so that labels from the data are never parsed.
    if values:
        ax.set_xticks(list(values), [str(value) for value in values])
    ax.xaxis.set_minor_formatter(NullFormatter())


def _offsets(count: int) -> list[float]:
    # Multiplicative x offsets keep the error bars of several sets apart on a log axis.
    if count <= 1:
        return [1.0]
    return list(np.linspace(0.96, 1.04, count))
