"""Read an audit run folder: summary.json, records.parquet and public.parquet.

The layout is the one ``docs/schema.md`` defines. :func:`load_run` checks that a folder
is a run and that its ``schema_version`` is one this package can read, and returns a
:class:`Run` whose tables feed the report, the plots and the notebooks.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dejavu.errors import InputError

SCHEMA_VERSION = 1
"""Newest ``summary.json`` schema version this package reads."""

INTERVAL_METRICS = ("ppg", "prg", "aucg")
TOP_L_GAPS = ("precision_gap", "recall_gap", "f_gap")


@dataclass
class Run:
    """An audit run folder loaded into memory.

    Attributes
    ----------
    path : pathlib.Path
        The run folder.
    summary : dict
        The parsed ``summary.json``.
    records : pandas.DataFrame
        ``records.parquet``: one row per scored record and record set.
    public : pandas.DataFrame
        ``public.parquet``: one row per public record.
    """

    path: Path
    summary: dict[str, Any]
    records: pd.DataFrame
    public: pd.DataFrame

    @property
    def test(self) -> str:
        """``"two-model"`` or ``"one-model"``."""
        return str(self.summary.get("test", "two-model"))

    @property
    def k_values(self) -> list[int]:
        """The k grid of the run, ascending."""
        ks = {int(entry["k"]) for entry in self.summary.get("results", [])}
        if not ks:
            ks = {int(k) for k in self.summary.get("settings", {}).get("k", [])}
        return sorted(ks)

    @property
    def largest_k(self) -> int:
        """The largest k scored, which the verdict and the gallery use."""
        ks = self.k_values
        if not ks:
            raise InputError(
                f"run {self.path} lists no k in summary.json 'results' or "
                "'settings.k'; rerun the audit"
            )
        return ks[-1]

    @property
    def has_control(self) -> bool:
        """Whether a control set was scored alongside the members."""
        return any(
            entry.get("set") == "control" for entry in self.summary.get("results", [])
        )

    def results(self, *, one_model: bool = False) -> pd.DataFrame:
        """Return the results entries as a tidy table.

        Parameters
        ----------
        one_model : bool, default=False
            Read the one-model results stored under the ``one_model`` key of a run
            that ran both tests, instead of the main ``results`` list.

        Returns
        -------
        pandas.DataFrame
            One row per (record set, k) with columns ``set``, ``k``, ``n``; for each
            of ``ppg``, ``prg`` and ``aucg`` the value and ``{metric}_ci_low``,
            ``{metric}_ci_high``; ``ppg_p_value``, ``prg_p_value``; and
            ``mean_precision_target``, ``mean_precision_reference``,
            ``mean_recall_target``, ``mean_recall_reference``.
        """
        rows = [_flatten_entry(entry) for entry in self._entries(one_model)]
        columns = ["set", "k", "n"]
        for metric in INTERVAL_METRICS:
            columns += [metric, f"{metric}_ci_low", f"{metric}_ci_high"]
        columns += ["ppg_p_value", "prg_p_value"]
        frame = pd.DataFrame(rows)
        for column in columns:
            if column not in frame.columns:
                frame[column] = pd.Series(dtype=float)
        rest = [c for c in frame.columns if c not in columns]
        return frame[columns + rest]

    def top_l(self, *, one_model: bool = False) -> pd.DataFrame:
        """Return the top-L entries as a tidy table.

        Returns
        -------
        pandas.DataFrame
            One row per (record set, k, ranking, fraction) with columns ``set``,
            ``k``, ``ranking``, ``fraction``, ``l``, ``inflated``, ``warning``, and
            for each of ``precision_gap``, ``recall_gap`` and ``f_gap`` the value
            and ``{gap}_ci_low``, ``{gap}_ci_high``.
        """
        rows = []
        for entry in self._entries(one_model):
            for item in entry.get("top_l") or []:
                row = {
                    "set": entry.get("set"),
                    "k": int(entry["k"]),
                    "ranking": item.get("ranking"),
                    "fraction": item.get("fraction"),
                    "l": item.get("l"),
                    "inflated": bool(
                        item.get("inflated", item.get("ranking") == "gap")
                    ),
                    "warning": item.get("warning"),
                }
                for gap in TOP_L_GAPS:
                    row.update(_flatten_interval(gap, item.get(gap)))
                rows.append(row)
        columns = ["set", "k", "ranking", "fraction", "l", "inflated", "warning"]
        for gap in TOP_L_GAPS:
            columns += [gap, f"{gap}_ci_low", f"{gap}_ci_high"]
        return pd.DataFrame(rows, columns=columns)

    def record_gaps(self, k: int | None = None) -> pd.DataFrame:
        """Return per-record precision and recall of both models at one k.

        Parameters
        ----------
        k : int, optional
            Number of neighbours; defaults to :attr:`largest_k`.

        Returns
        -------
        pandas.DataFrame
            One row per row of ``records.parquet`` with columns ``id``, ``set``,
            ``min_dist``; ``target_precision``, ``reference_precision``,
            ``precision_gap``; ``target_recall``, ``reference_recall``,
            ``recall_gap``; ``target_correct``, ``reference_correct`` and
            ``correct_gap``. Gaps are target minus reference.

        Raises
        ------
        InputError
            If ``records.parquet`` lacks a column for that k.
        """
        k = self.largest_k if k is None else int(k)
        frame = pd.DataFrame(
            {"id": self.records["id"].astype(str), "set": self.records["set"]}
        )
        frame["min_dist"] = self.records.get("min_dist", pd.Series(float("nan")))
        for score in ("precision", "recall", "correct"):
            for model in ("target", "reference"):
                column = f"{model}_k{k}_{score}"
                if column not in self.records.columns:
                    raise InputError(
                        f"{self.path / 'records.parquet'} has no column {column!r}; "
                        f"k={k} was not scored in this run (k grid: {self.k_values})"
                    )
                dtype = "int64" if score == "correct" else float
                frame[f"{model}_{score}"] = self.records[column].astype(dtype)
            frame[f"{score}_gap"] = (
                frame[f"target_{score}"] - frame[f"reference_{score}"]
            )
        return frame

    def ranked_by_recall_gap(self, k: int | None = None) -> pd.DataFrame:
        """Return the member records ranked by recall gap at one k, largest first.

        Ties are broken by the gap in correct objects (larger first), then by
        ``min_dist`` (smaller first), then by id. The table is
        :meth:`record_gaps` restricted to members, with a 1-based ``rank`` column
        first.
        """
        gaps = self.record_gaps(k)
        members = gaps[gaps["set"] == "members"]
        ranked = members.sort_values(
            ["recall_gap", "correct_gap", "min_dist", "id"],
            ascending=[False, False, True, True],
            kind="stable",
        ).reset_index(drop=True)
        ranked.insert(0, "rank", range(1, len(ranked) + 1))
        return ranked

    def _entries(self, one_model: bool) -> list[dict]:
        if not one_model:
            return list(self.summary.get("results") or [])
        extra = self.summary.get("one_model")
        if isinstance(extra, dict):
            return list(extra.get("results") or [])
        if isinstance(extra, list):
            return extra
        return []


def _flatten_interval(name: str, interval) -> dict[str, float | None]:
    if isinstance(interval, dict):
        return {
            name: interval.get("value"),
            f"{name}_ci_low": interval.get("ci_low"),
            f"{name}_ci_high": interval.get("ci_high"),
        }
    return {name: interval, f"{name}_ci_low": None, f"{name}_ci_high": None}


def _flatten_entry(entry: dict) -> dict[str, Any]:
    row: dict[str, Any] = {
        "set": entry.get("set"),
        "k": int(entry["k"]),
        "n": entry.get("n"),
    }
    for metric in INTERVAL_METRICS:
        row.update(_flatten_interval(metric, entry.get(metric)))
    row["ppg_p_value"] = entry.get("ppg_p_value")
    row["prg_p_value"] = entry.get("prg_p_value")
    for mean in ("mean_precision", "mean_recall"):
        value = entry.get(mean)
        if isinstance(value, dict):
            for model, number in value.items():
                row[f"{mean}_{model}"] = number
    return row


def load_run(path: str | os.PathLike) -> Run:
    """Load an audit run folder.

    Parameters
    ----------
    path : path-like
        A folder written by ``dejavu audit``, holding ``summary.json``,
        ``records.parquet`` and ``public.parquet``.

    Returns
    -------
    Run
        The parsed summary and both tables.

    Raises
    ------
    InputError
        If the folder or one of its files is missing or unreadable, or if its
        ``schema_version`` is newer than :data:`SCHEMA_VERSION`.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"run folder {path} does not exist or is not a folder; pass the folder "
            "that 'dejavu audit' wrote"
        )
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        raise InputError(
            f"{path} is not an audit run: summary.json is missing; pass the folder "
            "that 'dejavu audit' wrote"
        )
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"cannot read {summary_path}: {err}; rerun the audit to rewrite it"
        ) from err
    if not isinstance(summary, dict):
        raise InputError(f"{summary_path} does not contain a JSON object")
    _check_schema_version(summary, summary_path)
    if not isinstance(summary.get("results"), list):
        raise InputError(f"{summary_path} has no 'results' list; rerun the audit")
    records = _read_table(path / "records.parquet")
    public = _read_table(path / "public.parquet")
    return Run(path=path, summary=summary, records=records, public=public)


def _check_schema_version(summary: dict, summary_path: Path) -> None:
    version = summary.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise InputError(
            f"{summary_path} has no integer 'schema_version' (found {version!r}); "
            "it was not written by 'dejavu audit'"
        )
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{summary_path} has schema_version {version}, but this dejavu reads "
            f"versions up to {SCHEMA_VERSION}; upgrade dejavu to read this run"
        )


def _read_table(table_path: Path) -> pd.DataFrame:
    if not table_path.is_file():
        raise InputError(
            f"{table_path.parent} is not a complete audit run: {table_path.name} "
            "is missing; rerun the audit"
        )
    try:
        return pd.read_parquet(table_path)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {table_path}: {err}") from err
