"""Stage records of multi-stage runs: a finished stage is skipped on rerun."""

from __future__ import annotations

from dejavu._io import StageRecords


def _counting_work(calls, output=None):
    def work():
        calls.append(1)
        if output is not None:
            output.write_text("done")

    return work


def test_stage_runs_once_with_same_settings(tmp_path):
    stages, calls = StageRecords(tmp_path), []
    assert stages.run("fit", {"epochs": 2}, _counting_work(calls))
    assert not stages.run("fit", {"epochs": 2}, _counting_work(calls))
    assert len(calls) == 1


def test_stage_runs_again_with_other_settings(tmp_path):
    stages, calls = StageRecords(tmp_path), []
    stages.run("fit", {"epochs": 2}, _counting_work(calls))
    assert stages.run("fit", {"epochs": 3}, _counting_work(calls))
    assert len(calls) == 2


def test_stage_runs_again_when_output_deleted(tmp_path):
    stages, calls = StageRecords(tmp_path), []
    output = tmp_path / "result.txt"
    stages.run("fit", {}, _counting_work(calls, output), outputs=[output])
    assert not stages.run("fit", {}, _counting_work(calls, output), outputs=[output])
    output.unlink()
    assert stages.run("fit", {}, _counting_work(calls, output), outputs=[output])
    assert output.exists()
    assert len(calls) == 2


def test_stage_without_record_is_not_done(tmp_path):
    output = tmp_path / "result.txt"
    output.write_text("left by someone else")
    assert not StageRecords(tmp_path).done("fit", {}, outputs=[output])
