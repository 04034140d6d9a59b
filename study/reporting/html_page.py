"""The report as one self-contained HTML page, and its figures (study.reporting.compute builds the numbers,
study.reporting.tables lays them out).

The page has no external reference: styles inline, every figure a base64 PNG in a data: URI, so report.html opens
in any browser straight from the folder (or as an MLflow artifact) and can be mailed on its own.

Figures per task (matplotlib.figure.Figure, not pyplot: nothing global to fill and close):
    forest   each pair's mean difference with its t CI (thick) and bootstrap CI (thin), Holm p on the right
    seeds    every seed of every family, a line joining the same seed across families; boxes behind;
             diverged seeds as red crosses at the failure value they enter at
    curves   per family, the mean over seeds (± 1 std band) of the validation objective and of the primary test
             metric per epoch, read from the seeds' metric histories
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from datetime import datetime, timezone

import numpy as np

from study.reporting.compute import PAIRWISE_FIELDS, Report, TaskGroup
from study.reporting.tables import (ALPHA, PER_CLASS_LEGEND, PUBLISHED_LEGEND, SEARCH_LEGEND, VARIANCE_LEGEND, Table,
                                    family_legend, family_table, head_stats_legend, pair_legend, pair_table,
                                    per_class_counts_table, per_class_tables, published_table, search_table,
                                    variance_table)

MANY_CLASSES = 20  # a head with more classes shows its per-class table folded (<details>)


def png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _colour(i: int) -> str:
    return f"C{i % 10}"


def forest_figure(group: TaskGroup):
    from matplotlib.figure import Figure

    u, pairs = group.units, group.pairs
    figure = Figure(figsize=(10, 0.5 * len(pairs) + 1.8))
    axis = figure.subplots()
    for i, row in enumerate(pairs):
        y = len(pairs) - 1 - i  # first pair on top, as in the table
        colour = "C0" if row["pairing"] == "paired" else "C1"
        significant = not math.isnan(row["p_t_holm"]) and row["p_t_holm"] < ALPHA
        if not math.isnan(row["ci_low"]):
            axis.plot([row["ci_low"] * u.scale, row["ci_high"] * u.scale], [y, y], color=colour, linewidth=3,
                      solid_capstyle="butt")
        if not math.isnan(row["boot_ci_low"]):
            axis.plot([row["boot_ci_low"] * u.scale, row["boot_ci_high"] * u.scale], [y - 0.22, y - 0.22],
                      color=colour, linewidth=1, alpha=0.8)
        axis.plot(row["diff"] * u.scale, y, "o", color=colour, markersize=7,
                  markerfacecolor=colour if significant else "white")
        p = "–" if math.isnan(row["p_t_holm"]) else f"{row['p_t_holm']:.2g}"
        prob = "–" if math.isnan(row["prob_a_beats_b"]) else f"{row['prob_a_beats_b']:.2f}"
        axis.annotate(f"p(Holm) {p}, P(A>B) {prob}", xy=(1.01, y), xycoords=("axes fraction", "data"),
                      va="center", fontsize=8)
    axis.axvline(0, color="black", linewidth=0.8)
    axis.set_yticks(range(len(pairs)))
    axis.set_yticklabels([f"{r['family_a']} − {r['family_b']} ({r['pairing']})" for r in reversed(pairs)],
                         fontsize=9)
    axis.set_ylim(-0.8, len(pairs) - 0.4)
    axis.set_xlabel(f"Δ = mean A − mean B, {group.primary}{u.suffix(True)}")
    axis.set_title(f"{group.task}: every pair, 95% t CI (thick) and bootstrap CI (thin); "
                   f"filled: Holm-corrected t p < {ALPHA:g}; blue paired, orange unpaired", fontsize=9)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return figure


def seeds_figure(group: TaskGroup):
    from matplotlib.figure import Figure

    u, results = group.units, group.results
    figure = Figure(figsize=(max(6.0, 1.4 * len(results) + 2.5), 5))
    axis = figure.subplots()
    entered = [r.entered() for r in results]
    boxes = [[v * u.scale for v in values.values()] or [math.nan] for values in entered]
    axis.boxplot(boxes, positions=range(len(results)), widths=0.5, showfliers=False,
                 medianprops={"color": "grey"}, boxprops={"color": "lightgrey"},
                 whiskerprops={"color": "lightgrey"}, capprops={"color": "lightgrey"})
    # an arm pooling study seeds keys its seeds (study seed, seed); a single config's are plain seeds
    seeds = sorted(set().union(*entered), key=lambda seed: seed if isinstance(seed, tuple) else (-1, seed))
    # Seed k sits at the same small offset in every family, so equal values (diverged seeds) stay apart.
    offset = {seed: 0.24 * (i / max(1, len(seeds) - 1) - 0.5) for i, seed in enumerate(seeds)}
    # One line per seed through the families that ran it: paired data look paired.
    for seed in seeds:
        points = [(x + offset[seed], values[seed] * u.scale) for x, values in enumerate(entered) if seed in values]
        axis.plot(*zip(*points), color="grey", alpha=0.35, linewidth=0.9, zorder=2)
    labelled = False
    for x, (result, values) in enumerate(zip(results, entered)):
        ok = [(x + offset[s], v * u.scale) for s, v in values.items() if s not in result.diverged]
        if ok:
            axis.scatter(*zip(*ok), s=22, color=_colour(x), zorder=3)
        failed = [(x + offset[s], values[s] * u.scale) for s in result.diverged if s in values]
        if failed:
            axis.scatter(*zip(*failed), s=70, marker="x", color="red", zorder=4,
                         label=None if labelled else "diverged seed (at its failure value)")
            labelled = True
    axis.set_xticks(range(len(results)))
    axis.set_xticklabels([f"{r.family}\n{len(r.finished)} finished / {len(r.diverged)} diverged" for r in results],
                         fontsize=8)
    axis.set_ylabel(f"{group.primary}{u.suffix()}")
    axis.set_title(f"{group.task}: {group.primary} per seed; grey lines join the same seed across families",
                   fontsize=10)
    if labelled:
        axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def curves_figure(group: TaskGroup):
    """None when no seed has a per-epoch history."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    names = (group.objective, group.primary)
    if not any(r.curves.get(name) for r in group.results for name in names):
        return None
    u = group.units
    figure = Figure(figsize=(12, 4.2))
    axes = figure.subplots(1, 2)
    for axis, name in zip(axes, names):
        for i, result in enumerate(group.results):
            series = [dict(history) for history in result.curves.get(name, {}).values()]
            if not series:
                continue
            epochs = sorted(set().union(*series))
            values = [[s[e] * u.scale for s in series if e in s] for e in epochs]
            mean, std = np.array([np.mean(v) for v in values]), np.array([np.std(v) for v in values])
            axis.plot(epochs, mean, color=_colour(i), linewidth=2, label=f"{result.family} (n={len(series)})")
            axis.fill_between(epochs, mean - std, mean + std, color=_colour(i), alpha=0.15, linewidth=0)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(f"{name}{u.suffix() if name == group.primary or group.higher_is_better else ''}")
        axis.set_title(f"{name} per epoch: mean over finished seeds ± 1 std", fontsize=10)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def _file_stem(report: Report, group: TaskGroup, kind: str) -> str:
    if len(report.groups) == 1:
        return f"{kind}.png"
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', group.task)}.png"


def figures(report: Report) -> dict[str, bytes]:
    """File name -> PNG bytes: forest, seeds and curves of each task (names suffixed by the task when several)."""
    out = {}
    for group in report.groups:
        builders = {"forest": forest_figure if group.pairs else None, "seeds": seeds_figure, "curves": curves_figure}
        for kind, build in builders.items():
            figure = build(group) if build else None
            if figure is not None:
                out[_file_stem(report, group, kind)] = png(figure)
    return out


STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } code { background: #f3f3f3; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.84em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; text-align: right; vertical-align: top; }
th { background: #f0f3f7; } td:first-child, th:first-child { text-align: left; white-space: nowrap; }
tr.note td { text-align: left; white-space: normal; color: #666; font-size: 0.9em; border-top: none;
             padding-left: 2em; }
tr.noted td { border-bottom: none; }
tr.emph td { background: #eef6ee; }
p.legend { color: #444; font-size: 0.92em; max-width: 80em; }
p.rule { background: #fff6e5; border-left: 4px solid #f0a020; padding: 0.5em 0.8em; max-width: 80em; }
div.scroll { overflow-x: auto; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
dl { font-size: 0.88em; } dt { font-weight: bold; } dd { margin: 0 0 0.4em 1.5em; }
"""


def _cell(text: str) -> str:
    """Escaped; a number cell may wrap only before a parenthesis ("2.1e-06 (8.4e-06)"), never inside a CI."""
    return html.escape(text).replace(" (", "\0").replace(" ", "&nbsp;").replace("\0", " (")


def table_html(table: Table, css: str = "") -> str:
    """A <table>; a `notes` column becomes a full-width line under its row, so the numbers stay narrow."""
    notes = table.headers.index("notes") if "notes" in table.headers else None
    columns = [j for j in range(len(table.headers)) if j != notes]
    lines = [f'<div class="scroll"><table class="{css}">',
             "<thead><tr>" + "".join(f"<th>{html.escape(table.headers[j])}</th>" for j in columns) + "</tr></thead>",
             "<tbody>"]
    for i, row in enumerate(table.rows):
        emph = " emph" if i < len(table.emphasis) and table.emphasis[i] else ""
        note = row[notes] if notes is not None else ""
        lines.append(f'<tr class="row{emph}{" noted" if note else ""}">'
                     + "".join(f"<td>{_cell(row[j])}</td>" for j in columns) + "</tr>")
        if note:
            lines.append(f'<tr class="note{emph}"><td colspan="{len(columns)}">{html.escape(note)}</td></tr>')
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _img(figures: dict[str, bytes], name: str, alt: str, caption: str) -> str:
    if name not in figures:
        return ""
    data = base64.b64encode(figures[name]).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def search_figures_html(group: TaskGroup) -> str:
    """Each search's optimisation history and parameter importances (Optuna's figures, logged with the parent
    run), side by side per family."""
    parts = []
    for result in group.results:
        for search in result.searches:
            images = {name: data for name, data in search.get("figures", {}).items()}
            if images:
                parts.append(f"<h4>{html.escape(result.family)}, study seed {html.escape(str(search['study_seed']))}"
                             "</h4>" + "".join(_img(images, name, name, CAPTIONS.get(name, name)) for name in images))
    return "\n".join(parts)


CAPTIONS = {"search_history.png": "Optimisation history: every trial's value (ASHA-stopped trials at the best they "
                                  "reached in their epochs) and the best so far.",
            "search_importances.png": "Parameter importances (Optuna's fANOVA): how much of the value's variance "
                                      "each searched parameter explains."}


def per_class_html(group: TaskGroup) -> str:
    """Each classification head's per-class table pooled over seeds (folded for many classes), and each arm's
    pooled counts folded beneath; "" when no seed logged per-class tables."""
    tables = per_class_tables(group)
    if not tables:
        return ""
    parts = ["<h3>Per class</h3>", f'<p class="legend">{html.escape(PER_CLASS_LEGEND)}</p>']
    for head, heading, table, n_classes in tables:
        body = table_html(table, "per-class")
        if n_classes > MANY_CLASSES:
            body = f"<details><summary>{n_classes} classes (click to show)</summary>{body}</details>"
        counts = "".join(f"<details><summary>{html.escape(result.family)}: pooled TP / FP / FN / TN</summary>"
                         + table_html(per_class_counts_table(result, head), "per-class-counts") + "</details>"
                         for result in group.results if head in result.per_class)
        parts += [f"<h4>{html.escape(heading)}</h4>", body, counts]
    return "\n".join(parts)


def render(report: Report, figures: dict[str, bytes]) -> str:
    """The whole page; `figures` from figures(report)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Family comparison: {html.escape(report.experiment)}</title>",
             f"<style>{STYLE}</style></head><body>",
             f"<h1>Family comparison: experiment <code>{html.escape(report.experiment)}</code></h1>",
             f'<p class="legend">Generated {when} by <code>python -m study.report</code>; the same numbers are in '
             "report.md, report.csv (per family) and pairwise.csv (per pair) beside this page.</p>"]
    for group in report.groups:
        parts += [f"<h2>Task <code>{html.escape(group.task)}</code>: {html.escape(group.primary)}</h2>",
                  f'<p class="legend">{html.escape(family_legend(group))}</p>',
                  table_html(family_table(group, head_stats=True), "families"),
                  (f'<p class="legend">{html.escape(head_stats_legend(group))}</p>' if group.head_metrics() else ""),
                  f'<p class="rule"><b>Diverged seeds.</b> {html.escape(group.failure_statement())}</p>',
                  "<h3>Every pair</h3>"]
        if group.pairs:
            parts += [f'<p class="legend">{html.escape(pair_legend(group))} Rows whose Holm-corrected t-test '
                      f"p &lt; {ALPHA:g} are shaded.</p>", table_html(pair_table(group), "pairs"),
                      "<details><summary>What each column of pairwise.csv means</summary><dl>"
                      + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                for k, v in PAIRWISE_FIELDS.items()) + "</dl></details>",
                      _img(figures, _file_stem(report, group, "forest"), "forest plot of the pairwise differences",
                           "Forest plot: each pair's mean difference A − B with its 95% t CI (thick) and BCa "
                           "bootstrap CI (thin); a filled dot is significant after Holm. The vertical line is no "
                           "difference.")]
        else:
            parts.append("<p>Fewer than two families to compare.</p>")
        variance, searches = variance_table(group), search_table(group)
        if variance:
            parts += ["<h3>Seed variance and tuning variance</h3>",
                      f'<p class="legend">{html.escape(VARIANCE_LEGEND)}</p>', table_html(variance, "variance")]
        if searches:
            parts += ["<h3>The searches</h3>", f'<p class="legend">{html.escape(SEARCH_LEGEND)}</p>',
                      table_html(searches, "searches"), search_figures_html(group)]
        parts.append(per_class_html(group))
        parts.append(_img(figures, _file_stem(report, group, "seeds"), "per-seed results",
                          "Every seed of every family; grey lines join the same seed (same splits and "
                          "initialisation) across families, so a paired difference shows as lines that all slope "
                          "the same way. Red crosses: diverged seeds at the value they enter the statistics at."))
        curves = _img(figures, _file_stem(report, group, "curves"), "learning curves",
                      f"Learning curves: {group.objective} and {group.primary} per epoch, the mean over each "
                      "family's finished seeds with a ± 1 std band (diverged seeds have no curve).")
        parts.append(curves or "<p class=\"legend\">No learning curves: the seeds' per-epoch histories were not "
                               "found.</p>")
    if report.published:
        parts += ["<h2>Published numbers beside ours</h2>", f'<p class="legend">{html.escape(PUBLISHED_LEGEND)}</p>',
                  table_html(published_table(report.published), "published")]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
