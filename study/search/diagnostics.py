"""How a search went, as figures: Optuna's optimisation history and parameter importances (optuna.visualization
.matplotlib), drawn from the study's journal into the study dir and logged with the reruns' parent run.

The history plots every Optuna trial's value: a trial ASHA stopped early reports the best it reached within the
epochs it was given, so the low points are partly truncated trials, not only poor configs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from study.infra.tracking import SEARCH_FIGURES  # the names the run layout gives them


def write_search_figures(study_dir: Path, family: str, metric: str) -> list[Path]:
    """The figures that can be drawn (importances need two finished trials and a param that varies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    from study.search.searcher import optuna_study

    study = optuna_study(study_dir, family)
    written = []
    plots = {SEARCH_FIGURES[0]: lambda: plot_optimization_history(study, target_name=metric),
             SEARCH_FIGURES[1]: lambda: plot_param_importances(study, target_name=metric)}
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                axes = plot()
            except (ValueError, RuntimeError):  # too few finished trials for importances
                continue
        figure = axes.get_figure()
        figure.set_size_inches(7, 4)
        title = axes.get_title() or axes.get_title(loc="left")  # importances put theirs on the left
        axes.set_title("", loc="left")
        axes.set_title(f"{family}: {title}")
        figure.tight_layout()
        figure.savefig(study_dir / name, dpi=90)
        plt.close(figure)
        written.append(study_dir / name)
    return written
