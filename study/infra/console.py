"""What a user sees while a job runs: one line per finished trial or seed, a progress line (done / total, best so
far, elapsed, ETA) and nothing of the libraries' own INFO chatter unless --verbose.

On a terminal the progress line is redrawn in place (carriage return); piped to a file it is printed as a plain
line now and then (every tenth of the job and at its end), so a log stays short and its last lines still say how
far along the job is. Ray Tune's own tables come back with --verbose.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time

# Loggers whose INFO lines (MLflow's and alembic's database set-up, Optuna's study creation) say nothing a user acts on.
CHATTY_LOGGERS = ("mlflow", "alembic", "optuna")


def quiet_libraries() -> None:
    """Keep third-party INFO lines out of the console; their warnings and errors still show.

    MLflow sets its loggers' levels when it is imported, from MLFLOW_LOGGING_LEVEL (set here unless the user set
    it; an MLflow imported already is set directly); Optuna through its own set_verbosity. Ray Tune's new output
    engine prints its experiment table and "View detailed results" even at verbose=0; its legacy engine
    (RAY_AIR_NEW_OUTPUT=0) prints nothing at verbose=0, and TrialConsole prints what a user needs. A failing
    trial's traceback, which Ray Tune logs in full each time, stays in its error.txt: the trial's line names it."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def ray_verbosity(verbose: bool) -> int:
    """RunConfig(verbose=...): Ray's tables (1: a status table every 30 s, each trial's config and last result) with
    --verbose, else silent (0)."""
    return 1 if verbose else 0


# --- formatting ----------------------------------------------------------------------------------------------

def format_duration(seconds: float) -> str:
    """42 s, 3 min 05 s, 1 h 02 min."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def eta_seconds(done_here: int, remaining: int, elapsed: float, time_left: float | None = None) -> float | None:
    """Time left at the pace of this run so far (`done_here` units in `elapsed` s, concurrency included); None
    before the first unit finishes. `time_left`: a time budget's remaining seconds, which caps it."""
    if remaining <= 0:
        return 0.0
    eta = elapsed / done_here * remaining if done_here > 0 else None
    if time_left is not None:
        eta = max(0.0, time_left) if eta is None else min(eta, max(0.0, time_left))
    return eta


def format_value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def progress_text(noun: str, done: int, total: int, elapsed: float, eta: float | None,
                  best: str | None = None) -> str:
    """`[7/24 trials] best val/acc_best 0.9690 | 1 min 05 s elapsed | ETA ~2 min 10 s`"""
    parts = [f"[{done}/{total} {noun}]" + (f" best {best}" if best else ""), f"{format_duration(elapsed)} elapsed",
             "ETA ?" if eta is None else ("done" if done >= total else f"ETA ~{format_duration(eta)}")]
    return " | ".join(parts)


def trial_line(index: int, total: int, trial_id: str, epochs: int, metric: str, value: float | None,
               params: dict, max_epochs: int, diverged: bool = False) -> str:
    """`  7/24 trial 4558d0c7  25 ep  val/acc_best 0.9690  lr=0.00846 c=17 ...`, then why it ended early."""
    width = len(str(total))
    shown = "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
    note = ("  diverged (NaN loss)" if diverged else
            "  stopped early by ASHA" if epochs < max_epochs else "")
    values = " ".join(f"{name}={format_value(v)}" for name, v in params.items())
    return f"  {index:>{width}}/{total} trial {trial_id}  {epochs:>{len(str(max_epochs))}} ep  {metric} {shown}  " \
           f"{values}{note}"


def every_tenth(done: int, total: int) -> bool:
    """When a piped log gets a progress line: every tenth of the job (at least every unit of a short one), and
    the last."""
    step = max(1, math.ceil(total / 10))
    return done % step == 0 or done >= total


class LiveLine:
    """A progress line at the bottom of the console: redrawn in place on a terminal; elsewhere printed as a plain
    line only when told (`plain=True`), so a file gets no stream of carriage returns."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.shown = ""

    def show(self, text: str, plain: bool = False) -> None:
        if self.live:
            self.stream.write("\r" + text.ljust(len(self.shown)))
            self.stream.flush()
            self.shown = text
        elif plain:
            print(text, file=self.stream, flush=True)

    def print(self, line: str) -> None:
        """A permanent line above the progress line."""
        if self.live and self.shown:
            self.stream.write("\r" + " " * len(self.shown) + "\r")
            print(line, file=self.stream, flush=True)
            self.show(self.shown)
        else:
            print(line, file=self.stream, flush=True)

    def clear(self) -> None:
        """Remove the progress line (the job's own summary follows)."""
        if self.live and self.shown:
            self.stream.write("\r" + " " * len(self.shown) + "\r")
            self.stream.flush()
            self.shown = ""


# --- the search ----------------------------------------------------------------------------------------------

class SearchConsole:
    """The search as a user sees it, fed by Ray Tune's trial events (TrialConsole): one line per finished trial
    (its epochs, its running best of the objective, the searched values, stopped early or diverged) and the
    progress line. Counts come from the trials Ray holds, so a resumed study counts what finished before."""

    def __init__(self, metric: str, mode: str, total: int, max_epochs: int, param_names: list[str],
                 time_budget: float | None = None, live: bool | None = None, clock=time.monotonic):
        self.metric, self.mode, self.total, self.max_epochs = metric, mode, total, max_epochs
        self.param_names, self.time_budget, self.clock = list(param_names), time_budget, clock
        self.live = live
        self.start()

    def start(self, stream=None) -> None:
        self.began = self.clock()
        self.finished: set[str] = set()  # trial ids that ended, this run or before it
        self.done_here = 0
        self.last_drawn = -math.inf
        self.best: tuple[float, str] | None = None
        self.line = LiveLine(stream, self.live)

    def __getstate__(self):  # Ray pickles its run config (tuner.pkl): leave the stream out
        return {k: v for k, v in self.__dict__.items() if k != "line"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.line = LiveLine(None, self.live)

    def result(self, trial_id: str, result: dict, trials=()) -> None:
        self._learn(trial_id, result, trials)
        self.tick()

    def tick(self) -> None:
        """On a terminal, redraw the progress line (at most once a second): the elapsed time moves."""
        if self.line.live and self.clock() - self.last_drawn >= 1.0:
            self._draw()

    def ended(self, trial_id: str, result: dict, config: dict, trials=(), error_file: str | None = None) -> None:
        self._learn(trial_id, result, trials)
        self.finished.add(trial_id)
        self.done_here += 1
        epochs = int(result.get("training_iteration", 0))
        if error_file is not None:
            self.line.print(f"  {len(self.finished):>{len(str(self.total))}}/{self.total} trial {trial_id}  errored "
                            f"after {epochs} epochs: {error_file}")
        else:
            self.line.print(trial_line(len(self.finished), self.total, trial_id, epochs, self.metric,
                                       result.get(self.metric), {n: config.get(n) for n in self.param_names},
                                       self.max_epochs, bool(result.get("diverged"))))
        self._draw(plain=every_tenth(len(self.finished), self.total))

    def retried(self, trial_id: str, error_file: str | None) -> None:
        self.line.print(f"  trial {trial_id} failed ({error_file}); retrying it")

    def close(self) -> None:
        self.line.clear()

    def _learn(self, trial_id: str, result: dict, trials) -> None:
        """The trials that ended before this run (a resume) and the best value of any trial so far."""
        for trial in trials:
            if trial.status in ("TERMINATED", "ERROR"):
                self.finished.add(trial.trial_id)
            self._consider(trial.trial_id, trial.last_result or {})
        self._consider(trial_id, result)

    def _consider(self, trial_id: str, result: dict) -> None:
        value = result.get(self.metric)
        if value is None or result.get("diverged") or not math.isfinite(value):
            return
        better = self.best is None or (value > self.best[0] if self.mode == "max" else value < self.best[0])
        if better:
            self.best = (value, trial_id)

    def progress(self) -> str:
        elapsed = self.clock() - self.began
        done = len(self.finished)
        time_left = None if self.time_budget is None else self.time_budget - elapsed
        best = None if self.best is None else f"{self.metric} {self.best[0]:.4f} (trial {self.best[1]})"
        return progress_text("trials", done, self.total, elapsed,
                             eta_seconds(self.done_here, self.total - done, elapsed, time_left), best)

    def _draw(self, plain: bool = False) -> None:
        self.last_drawn = self.clock()
        self.line.show(self.progress(), plain=plain)


@functools.cache
def _trial_console_class():
    """Ray Tune's Callback, imported only by the search (importing ray.tune takes seconds)."""
    from ray.tune import Callback

    class TrialConsole(Callback):
        """Ray Tune's trial events -> SearchConsole."""

        def __init__(self, console: SearchConsole):
            self.console = console

        def setup(self, **info):
            self.console.start()

        def on_step_end(self, iteration, trials, **info):
            self.console.tick()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.console.result(trial.trial_id, result, trials)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.console.ended(trial.trial_id, trial.last_result or {}, trial.config, trials)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.console.ended(trial.trial_id, trial.last_result or {}, trial.config, trials,
                               error_file=trial.error_file or "no error file")

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.console.retried(trial.trial_id, trial.error_file)

        def on_experiment_end(self, trials, **info):
            self.console.close()

    return TrialConsole


def trial_console(console: SearchConsole):
    """A ray.tune.Callback that prints `console`'s lines as trials report and end."""
    return _trial_console_class()(console)


# --- reruns --------------------------------------------------------------------------------------------------

class SeedProgress:
    """Reruns: each seed's line carries done / total, elapsed and ETA; on a terminal a progress line below them
    ticks every second while seeds train."""

    def __init__(self, total: int, live: bool | None = None, clock=time.monotonic, stream=None):
        self.total, self.clock = total, clock
        self.done = 0
        self.began = clock()
        self.line = LiveLine(stream, live)

    def status(self) -> str:
        elapsed = self.clock() - self.began
        return progress_text("seeds", self.done, self.total, elapsed,
                             eta_seconds(self.done, self.total - self.done, elapsed))

    def finished(self, line: str) -> None:
        """A seed ended: its line, with where the reruns stand."""
        self.done += 1
        self.line.print(f"{line}  {self.status()}")
        self.tick()

    def note(self, line: str) -> None:
        self.line.print(line)

    def tick(self) -> None:
        if self.done < self.total:
            self.line.show(self.status())
        else:
            self.line.clear()

    def close(self) -> None:
        self.line.clear()
