"""The verdict at the top of a report: was memorization detected?

Two rules, depending on whether a control set was scored:

- With a control set, memorization is detected when the member-minus-control PRG at the
  largest k has its whole confidence interval above 0. The control set corrects for a
  target that simply retrieves differently from the reference on any data.
- Without one, memorization is detected when PRG is positive and significant at
  ``1 - ci_level`` after a Holm correction over the sign-test p-values of PPG and PRG at
  every k, since testing many figures at once would otherwise find one by chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dejavu.report.run import Run

RULE_CONTROL = (
    "Memorization is detected when the member-minus-control population recall gap "
    "(PRG) at the largest k has its {level:.0%} confidence interval entirely above 0."
)
RULE_HOLM = (
    "Memorization is detected when the population recall gap (PRG) of the members is "
    "positive and its sign-test p-value stays below {alpha:g} after a Holm correction "
    "over the PPG and PRG tests at every k ({m} tests)."
)


@dataclass
class Verdict:
    """Whether a run shows memorization, with the rule and the deciding figures.

    Attributes
    ----------
    detected : bool
        True when the rule finds memorization.
    rule : str
        The rule applied, as one sentence for the report.
    evidence : str
        The figures that decided, as one sentence.
    uses_control : bool
        True when the control-set rule was applied.
    holm : list of dict
        For the rule without a control set: one entry per test with ``metric``,
        ``k``, ``value``, ``p_value`` and ``p_holm`` (Holm-adjusted).
    """

    detected: bool
    rule: str
    evidence: str
    uses_control: bool
    holm: list[dict] = field(default_factory=list)

    @property
    def headline(self) -> str:
        """Short text for the top of the report."""
        if self.detected:
            return "Memorization detected"
        return "No memorization detected"


def holm_adjust(p_values) -> np.ndarray:
    """Return Holm step-down adjusted p-values.

    Parameters
    ----------
    p_values : array-like of shape (m,)
        Unadjusted p-values.

    Returns
    -------
    numpy.ndarray of shape (m,)
        Adjusted p-values in the input order; a hypothesis is rejected at level
        alpha when its adjusted p-value is at most alpha.

    Examples
    --------
    >>> holm_adjust([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    # Step-down: an adjusted p-value is never below those of smaller raw p-values.
    adjusted_sorted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted


def decide(run: Run) -> Verdict:
    """Apply the verdict rule to a run.

    The control-set rule applies when the run has ``difference`` entries; otherwise
    the Holm rule over the member entries applies.
    """
    level = float(run.summary.get("settings", {}).get("ci_level", 0.95))
    results = run.results()
    k = run.largest_k
    difference = results[(results["set"] == "difference") & (results["k"] == k)]
    if len(difference):
        row = difference.iloc[0]
        detected = _finite(row["prg_ci_low"]) and row["prg_ci_low"] > 0
        evidence = (
            f"Member-minus-control PRG at k={k} is {_fmt(row['prg'])} "
            f"({level:.0%} CI {_fmt(row['prg_ci_low'])} to {_fmt(row['prg_ci_high'])})."
        )
        return Verdict(
            detected=bool(detected),
            rule=RULE_CONTROL.format(level=level),
            evidence=evidence,
            uses_control=True,
        )
    return _decide_holm(results, alpha=1.0 - level)


def _decide_holm(results, alpha: float) -> Verdict:
    members = results[results["set"] == "members"].sort_values("k")
    tests = []
    for _, row in members.iterrows():
        for metric in ("ppg", "prg"):
            p_value = row[f"{metric}_p_value"]
            if _finite(p_value):
                tests.append(
                    {
                        "metric": metric.upper(),
                        "k": int(row["k"]),
                        "value": float(row[metric]),
                        "p_value": float(p_value),
                    }
                )
    adjusted = holm_adjust([test["p_value"] for test in tests])
    for test, p_holm in zip(tests, adjusted, strict=True):
        test["p_holm"] = float(p_holm)
    significant = [
        test
        for test in tests
        if test["metric"] == "PRG" and test["value"] > 0 and test["p_holm"] <= alpha
    ]
    rule = RULE_HOLM.format(alpha=round(alpha, 6), m=len(tests))
    if significant:
        best = min(significant, key=lambda test: test["p_holm"])
        evidence = (
            f"PRG at k={best['k']} is {_fmt(best['value'])} with Holm-adjusted "
            f"p = {_fmt_p(best['p_holm'])}."
        )
    elif tests:
        prg_tests = [test for test in tests if test["metric"] == "PRG"]
        best = min(prg_tests or tests, key=lambda test: test["p_holm"])
        evidence = (
            f"The smallest Holm-adjusted p-value of a {best['metric']} test is "
            f"{_fmt_p(best['p_holm'])} (k={best['k']}, value {_fmt(best['value'])})."
        )
    else:
        evidence = "The run has no sign-test p-values, so no test could be applied."
    return Verdict(
        detected=bool(significant),
        rule=rule,
        evidence=evidence,
        uses_control=False,
        holm=tests,
    )


def _finite(value) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _fmt(value) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value:+.3f}"


def _fmt_p(value) -> str:
    if not _finite(value):
        return "n/a"
    if value < 1e-4:
        return f"{value:.1e}"
    return f"{value:.4f}"
