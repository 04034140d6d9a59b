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
from study.reporting.compute import Report, head_metric_summary
from study.reporting.stats import describe
from study.reporting.tables import (PUBLISHED_LEGEND, SEARCH_LEGEND, VARIANCE_LEGEND, family_legend, family_table,
                                    head_stats_legend, head_stats_table, pair_legend, pair_table, published_table,
                                    search_table, variance_table)


def reproduction_markdown(rows: list[dict]) -> str:
    return "\n".join(["", "## Published numbers beside ours", "", PUBLISHED_LEGEND, "",
                      published_table(rows).markdown()])


def markdown(report: Report) -> str:
    lines = [f"# Family comparison: experiment `{report.experiment}`", ""]
    for group in report.groups:
        lines += [f"## Task `{group.task}`: {group.primary}", "", family_legend(group), "",
                  family_table(group).markdown(), f"**Diverged seeds.** {group.failure_statement()}", ""]
        head_stats = head_stats_table(group)
        if head_stats:
            lines += ["### The other statistics of the head", "", head_stats_legend(group), "",
                      head_stats.markdown()]
        lines += ["### Every pair", ""]
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
              "report.html beside this file, and as PNG files"
              + ("; the per-class tables pooled over seeds in report.html and per_class.csv." if per_class_rows(report)
                 else "."), ""]
    return "\n".join(lines)


def family_rows(report: Report) -> list[dict]:
    """One row per arm (report.csv): the primary metric over every seed (diverged ones at the failure value),
    over the finished seeds only, at the best-validation epoch, and the best objective over epochs; the parameter
    count and training seconds per seed; the other statistics of the primary metric's head (<metric>_mean,
    <metric>_std; NaN where not logged)."""
    rows = []
    for group in report.groups:
        others = group.head_metrics()
        for result in group.results:
            rows.append(family_row(result))
            params, seconds = result.values("n_params").values(), describe(result.values("train_seconds").values())
            rows[-1].update(n_params=sum(params) / len(params) if params else math.nan,
                            train_seconds_mean=seconds["mean"], train_seconds_std=seconds["std"])
            for name in others:
                d = head_metric_summary(result, name)
                rows[-1].update({f"{name}_mean": d["mean"], f"{name}_std": d["std"]})
    return rows


def family_row(result) -> dict:
    """The primary metric's columns of one arm's report.csv row."""
    d = describe(result.test)
    at_best, best = describe(result.entered(result.at_best_val).values()), \
        describe(result.entered(result.objective_best).values())
    value = result.failure_value()
    return {"task": result.task, "family": result.family, "primary_metric": result.primary,
            "n": d["n"], "n_finished": len(result.finished), "n_diverged": len(result.diverged),
            "failure_value": math.nan if value is None else value, "mean": d["mean"], "std": d["std"],
            "ci95_low": d["ci95_low"], "ci95_high": d["ci95_high"],
            "mean_finished_only": describe(result.values(result.primary).values())["mean"],
            "at_best_val_mean": at_best["mean"], "at_best_val_std": at_best["std"],
            "objective_best_metric": result.objective_best, "objective_best_mean": best["mean"],
            "objective_best_std": best["std"], "parent_run": result.parent_id,
            "config_hash": result.config_hash}


def per_class_rows(report: Report) -> list[dict]:
    """per_class.csv: per task, classification head, arm and class, the counts pooled over the arm's finished seeds
    and the precision, recall and F1 they give."""
    return [{"task": result.task, "head": head, "family": result.family, "seeds": table["seeds"], **row}
            for result in report.results for head, table in result.per_class.items() for row in table["rows"]]


def to_csv(rows: list[dict]) -> str:
    """Every field of every row (rows of different tasks may carry different ones; a missing one is empty)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def write_report(report: Report, out: Path) -> list[str]:
    """report.md, report.csv, pairwise.csv, report.html, the figures as PNG (published.csv with presets,
    per_class.csv when the seeds logged per-class tables) in `out`; returns the file names written."""
    out.mkdir(parents=True, exist_ok=True)
    figures = html_page.figures(report)  # file name -> PNG bytes
    files = {"report.md": markdown(report), "report.csv": to_csv(family_rows(report)),
             "pairwise.csv": to_csv(report.pairs) or "no pairs\n", **figures,
             "report.html": html_page.render(report, figures)}
    if report.published:
        files["published.csv"] = to_csv(report.published)
    if per_class_rows(report):
        files["per_class.csv"] = to_csv(per_class_rows(report))
    for name, content in files.items():
        write_atomic(out / name, content)
    return list(files)
