"""The review report of an audit run: loading runs, verdict, plots, HTML and Markdown.

- :func:`load_run` reads a run folder (``docs/schema.md``) into a :class:`Run`.
- :func:`write_report` writes ``report.html``, ``summary.md`` and ``memorized.csv``.
- :func:`compare_runs` writes one page comparing several runs.
- :mod:`dejavu.report.plots` has the figures, for notebooks too.
"""

from dejavu.report.run import SCHEMA_VERSION, Run, load_run
from dejavu.report.verdict import Verdict, decide, holm_adjust
from dejavu.report.write import compare_runs, render_summary_markdown, write_report

__all__ = [
    "SCHEMA_VERSION",
    "Run",
    "Verdict",
    "compare_runs",
    "decide",
    "holm_adjust",
    "load_run",
    "render_summary_markdown",
    "write_report",
]
