"""Figures logged with the runs: learning curves of a config's seeds."""

from __future__ import annotations


def curve_names(spec) -> tuple[str, ...]:
    """train/val loss, and the objective head's metric on train, val and test."""
    stem = spec.objective.split("/", 1)[1]
    return ("train/loss", "val/loss", f"train/{stem}", f"val/{stem}", f"test/{stem}")


def learning_curves(family: str, curves: dict[str, dict[str, list[tuple[int, float]]]], spec):
    """Loss and the objective head's metric per epoch: each seed a thin transparent line, the mean across seeds
    bold."""
    import numpy as np
    from matplotlib.figure import Figure  # not pyplot: no global figure registry to fill and close

    figure = Figure(figsize=(11, 4))
    axes = figure.subplots(1, 2)
    names = curve_names(spec)
    panels = ((axes[0], names[:2], "loss"), (axes[1], names[2:], spec.objective.split("/", 1)[1]))
    for axis, names, label in panels:
        for colour, name in zip(("C0", "C1", "C2"), names):
            series = [dict(history[name]) for history in curves.values() if history.get(name)]
            if not series:
                continue
            epochs = sorted(set().union(*series))
            for s in series:
                axis.plot(list(s), list(s.values()), color=colour, alpha=0.25, linewidth=0.8)
            mean = [np.mean([s[e] for s in series if e in s]) for e in epochs]
            axis.plot(epochs, mean, color=colour, linewidth=2.5, label=f"{name} (mean of {len(series)})")
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(f"{family}: {len(curves)} seeds")
    figure.tight_layout()
    return figure


def confusion_figure(title: str, matrix, labels: list[str]):
    """A confusion matrix (rows the true class, columns the predicted one) as counts shaded by each row's share,
    labelled by class; the counts are written in the cells up to 20 classes, the labels shown up to 40."""
    import numpy as np
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    n = len(counts)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # a row's share: rare classes still show
    size = min(5 + 0.3 * n, 16)
    figure = Figure(figsize=(size, size * 0.85))
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    if n <= 40:
        axes.set_xticks(range(n), labels, rotation=90 if max(map(len, labels)) > 2 else 0)
        axes.set_yticks(range(n), labels)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                axes.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=8,
                          color="white" if shares[i, j] > 0.5 else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure
