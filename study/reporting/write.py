"""The report's files: report.md (Markdown), report.csv (per arm), pairwise.csv (per pair), published.csv (with
presets), report.html and its figures as PNG (study.reporting.html_page), each written atomically.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from study.infra.files import write_atomic
from study.reporting import html_page
from study.reporting.compute import Report
from study.reporting.stats import describe
from study.reporting.tables import (PUBLISHED_LEGEND, SEARCH_LEGEND, VARIANCE_LEGEND, family_legend, family_table,
                                    pair_legend, pair_table, published_table, search_table, variance_table)


def reproduction_markdown(rows: list[dict]) -> str:
    return "\n".join(["", "## Published numbers beside ours", "", PUBLISHED_LEGEND, "",
                      published_table(rows).markdown()])


def markdown(report: Report) -> str:
    lines = [f"# Family comparison: experiment `{report.experiment}`", ""]
    for group in report.groups:
        lines += [f"## Task `{group.task}`: {group.primary}", "", family_legend(group), "",
                  family_table(group).markdown(), f"**Diverged seeds.** {group.failure_statement()}", "",
                  "### Every pair", ""]
        if group.pairs:
            lines += [pair_legend(group), "", pair_table(group).markdown()]
        else:
            lines += ["Fewer than two families to compare.", ""]
        variance = variance_table(group)
        if variance:
            lines += ["### Seed variance and tuning variance", "", VARIANCE_LEGEND, "", variance.markdown()]
        searches = search_table(group)
        if searches:
            lines += ["### The searches", "", SEARCH_LEGEND, "", searches.markdown()]
    if report.published:
        lines.append(reproduction_markdown(report.published))
    lines += ["", "Figures (forest plot of the pairwise differences, per-seed results, learning curves) are in "
              "report.html beside this file, and as PNG files.", ""]
    return "\n".join(lines)


def family_rows(report: Report) -> list[dict]:
    """One row per arm (report.csv): the primary metric over every seed (diverged ones at the failure value),
    over the finished seeds only, at the best-validation epoch, and the best objective over epochs."""
    rows = []
    for result in report.results:
        d = describe(result.test)
        at_best, best = describe(result.entered(result.at_best_val).values()), \
            describe(result.entered(result.objective_best).values())
        value = result.failure_value()
        rows.append({"task": result.task, "family": result.family, "primary_metric": result.primary,
                     "n": d["n"], "n_finished": len(result.finished), "n_diverged": len(result.diverged),
                     "failure_value": math.nan if value is None else value, "mean": d["mean"], "std": d["std"],
                     "ci95_low": d["ci95_low"], "ci95_high": d["ci95_high"],
                     "mean_finished_only": describe(result.values(result.primary).values())["mean"],
                     "at_best_val_mean": at_best["mean"], "at_best_val_std": at_best["std"],
                     "objective_best_metric": result.objective_best, "objective_best_mean": best["mean"],
                     "objective_best_std": best["std"], "parent_run": result.parent_id,
                     "config_hash": result.config_hash})
    return rows


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_report(report: Report, out: Path) -> list[str]:
    """report.md, report.csv, pairwise.csv, report.html, the figures as PNG (published.csv with presets) in
    `out`; returns the file names written."""
    out.mkdir(parents=True, exist_ok=True)
    figures = html_page.figures(report)  # file name -> PNG bytes
    files = {"report.md": markdown(report), "report.csv": to_csv(family_rows(report)),
             "pairwise.csv": to_csv(report.pairs) or "no pairs\n", **figures,
             "report.html": html_page.render(report, figures)}
    if report.published:
        files["published.csv"] = to_csv(report.published)
    for name, content in files.items():
        write_atomic(out / name, content)
    return list(files)
