"""Execute the notebooks top to bottom with nbclient, as an analyst would run them.

The audit walkthrough runs on the shared end-to-end audit run; the mitigation
notebook runs on a mitigation table in the format ``dejavu mitigate`` writes, built
here. The notebooks are also checked to be stored without outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TIMEOUT_S = 180
"""Limit per cell, in seconds; a cell of these notebooks takes a few seconds."""


def _execute(name: str, workdir: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return notebook


def _outputs_of_type(notebook, output_type: str) -> list:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == output_type
    ]


def _mitigation_table(folder: Path) -> Path:
    rows = []
    for rate, zero_shot, linear_probe in (
        (0.0, 0.42, 0.61),
        (0.3, 0.40, 0.60),
        (0.6, 0.33, 0.55),
    ):
        for record_set in ("members", "control", "difference"):
            for k in (1, 5, 10):
                shrink = 1.0 - rate
                base = {"members": 0.25, "control": 0.03, "difference": 0.22}
                value = base[record_set] * shrink
                row = {"rate": rate, "set": record_set, "k": k}
                for metric in ("ppg", "prg", "aucg"):
                    row[metric] = value
                    row[f"{metric}_ci_low"] = value - 0.05
                    row[f"{metric}_ci_high"] = value + 0.05
                row["zero_shot"] = zero_shot
                row["linear_probe"] = linear_probe
                rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "mitigation.csv", index=False)
    return folder


@pytest.mark.parametrize("name", ["01_audit_walkthrough.ipynb", "02_mitigation.ipynb"])
def test_notebook_stored_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells)


def test_notebook_audit_walkthrough_runs(scene_audit, tmp_path, monkeypatch):
    monkeypatch.setenv("DEJAVU_RUN", str(scene_audit))
    notebook = _execute("01_audit_walkthrough.ipynb", tmp_path)
    assert _outputs_of_type(notebook, "error") == []
    figures = [
        output
        for output in _outputs_of_type(notebook, "display_data")
        + _outputs_of_type(notebook, "execute_result")
        if "image/png" in output.get("data", {})
    ]
    assert len(figures) >= 5


def test_notebook_mitigation_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("DEJAVU_MITIGATION", str(_mitigation_table(tmp_path / "study")))
    notebook = _execute("02_mitigation.ipynb", tmp_path)
    images = [
        output
        for output in _outputs_of_type(notebook, "display_data")
        if "image/png" in output.get("data", {})
    ]
    assert len(images) == 1
