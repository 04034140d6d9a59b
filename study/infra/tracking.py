"""MLflow layout: one experiment per study, one parent run per (family, config), one child run per seed.

Only the driver writes (one writer, so SQLite never sees concurrent writers and nothing is lost or duplicated).
Default store with no server: SQLite at mlruns/mlflow.db, artifacts under mlruns/artifacts (any SQLite database
keeps its artifacts in the folder `artifacts` beside it).

    experiment  tags: mlflow.experimentKind=custom_model_development (the UI opens it on its runs), a description
    parent  tags: study.role=parent, task, family, config_hash; params: the config (without seed);
            tags failure_value, failure_rule (what a diverged seed enters the summary at), higher_is_better;
            mlflow.note.content: its description in the UI, the summary in one line;
            metrics: test/acc_mean, _std, _ci95_low, _ci95_high, n_seeds, n_finished, n_diverged, n_params,
            train_seconds_mean (over the finished seeds), ...;
            artifacts: config.yaml, curves
    child   tags: study.role=seed, mlflow.parentRunId, task, family, config_hash, seed, git_commit, versions;
            params: the full config; metrics: per epoch with step=epoch, then at the final step the run's summary
            values, every stat of every head on the test split (test/<head.metric_for(stat)>, and _at_best_val),
            n_params, train_seconds; artifacts per classification head: per_class/<head>.csv (class, label,
            support, tp, fp, fn, tn, precision, recall, f1) and per_class/<head>_confusion.png.
            A seed whose loss diverged: a FAILED child tagged `diverged` (the reason), no metrics
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

from study.infra.errors import StudyError, first_line

DEFAULT_EXPERIMENT = "digit-pairs"
STORE_OUTAGE_SECONDS = 300  # how long the reruns wait for a tracking store that stopped answering (a restart)


def default_experiment(task: str) -> str:
    """One experiment per task unless told otherwise: digit-pairs for digit_pairs (as before tasks existed)."""
    return task.replace("_", "-")
DEFAULT_STORE = Path("mlruns")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars in a report's output
ROLE = "study.role"
PARENT_TAG = "mlflow.parentRunId"
# What an experiment is for, as MLflow 3 records it (the tag its UI's kind selector writes): ours are model
# training. MLflow 3.17's UI does not route by it (its GenAI / Model training switch decides: ui_link).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # a run's or experiment's description in the UI
EXPERIMENT_NOTE = ("Made by the study framework. Each parent run (filter `tags.study.role = 'parent'`) is one "
                   "(family, config) with its seeds' summary; its child runs are the seeds; a `report` run holds "
                   "the comparison report.")
# the search's figures (study.search.diagnostics draws them), logged under search/ with the parent run
SEARCH_FIGURES = ("search_history.png", "search_importances.png")
IDENTITY_TAGS = ("preset", "study_seed", "reference")  # tags that tell apart parent runs of the same config
VERSIONED = ("torch", "torchvision", "torchmetrics", "ray", "optuna", "mlflow", "numpy")


def default_tracking_uri() -> str:
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


def resolve_tracking_uri(uri: str | None) -> str:
    """`--tracking-uri`, else MLFLOW_TRACKING_URI, else SQLite under ./mlruns."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


# config keys (study.config.schema.TrainSettings) that are no part of a config's identity while they hold their
# default "": a config made before they existed keeps its hash, its parent run and its params
METRIC_KEYS = ("objective", "metric")


def named_config(config: dict) -> dict:
    """`config` without the METRIC_KEYS that hold "" (the task's own objective and metric)."""
    return {key: value for key, value in config.items() if not (key in METRIC_KEYS and value == "")}


def config_hash(config: dict) -> str:
    """Identifies a config across its seeds: everything but the seed (and METRIC_KEYS left at "")."""
    canonical = json.dumps({k: v for k, v in sorted(named_config(config).items()) if k != "seed"}, sort_keys=True,
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def environment_tags() -> dict[str, str]:
    """Git commit and package versions: what a reader needs to reproduce a run."""
    tags = {"python": platform.python_version()}
    for package in VERSIONED:
        try:
            tags[f"version.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    tags["git_commit"] = commit or "unknown"
    return tags


class Tracker:
    """The driver's MLflow client for one experiment."""

    def __init__(self, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT, create: bool = True):
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri(uri)
        check_no_login_in(self.uri)
        check_reachable(self.uri)
        database = None
        if self.uri.startswith("sqlite:///"):
            database = Path(self.uri[len("sqlite:///"):])
            if not create and not database.exists():
                raise StudyError(f"no tracking database at --tracking-uri {self.uri}")
            database.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is None and not create:
                raise StudyError(f"no experiment {experiment!r} at --tracking-uri {self.uri}")
            if found is None:
                # Beside an SQLite database: MLflow's default is ./mlruns of whichever folder the command ran in.
                # A server keeps its own artifact location.
                artifacts = (database.parent / "artifacts").resolve().as_uri() if database else None
                self.experiment_id = self.client.create_experiment(
                    experiment, artifact_location=artifacts,
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, NOTE_TAG: EXPERIMENT_NOTE})
            else:
                self.experiment_id = found.experiment_id
                # The write check, before anything trains: the kind tag (set when missing: made before the kind
                # was set) needs the permission that logging runs needs, so a server's refusal comes now.
                self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG,
                                               found.tags.get(EXPERIMENT_KIND_TAG, EXPERIMENT_KIND))
        except StudyError:
            raise
        except Exception as exc:  # MlflowException, SQLAlchemy errors, HTTP errors
            raise StudyError(refused_login(self.uri, experiment, exc) or
                             f"cannot use the tracking store --tracking-uri {self.uri}: "
                             f"{first_line(exc)}") from None
        self.experiment = experiment

    def search(self, filter_string: str, statuses: tuple[str, ...] | None = None) -> list:
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=5000,
                                       order_by=["attributes.start_time DESC"])
        return [run for run in runs if statuses is None or run.info.status in statuses]

    def parent_run(self, family: str, config: dict, preset: dict[str, str] | None = None,
                   metrics: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> str:
        """The parent run of (family, config[, preset][, labels]), created on first use. `preset` holds the tags
        of a published-table preset: preset (its name), statistic, published_mean, published_std; `metrics` the
        names of the task's metrics a report reads (primary_metric, objective); `labels` tags that are part of the
        parent's identity (study_seed: the study that tuned it; reference: a reference row such as the untuned
        defaults)."""
        digest, identity = config_hash(config), {**({"preset": preset["preset"]} if preset else {}), **(labels or {})}
        query = f"tags.`{ROLE}` = 'parent' AND tags.config_hash = '{digest}' AND tags.family = '{family}'"
        query += "".join(f" AND tags.{key} = '{value}'" for key, value in identity.items())
        found = [run for run in self.search(query)
                 if all(key in identity for key in IDENTITY_TAGS if key in run.data.tags)]
        if found:
            return found[0].info.run_id
        name = preset["preset"].replace("/", "__") if preset else \
            f"{family}__{labels['reference'].replace(' ', '_')}" if labels and "reference" in labels else \
            f"{family}__{digest}"
        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={ROLE: "parent", "family": family, "config_hash": digest,
                                           "task": config.get("task", "digit_pairs"), **(metrics or {}),
                                           **(preset or {}), **(labels or {})})
        from mlflow.entities import Param

        params = [Param(k, str(v)) for k, v in sorted(named_config(config).items()) if k != "seed"]
        self.client.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    def log_search(self, parent_id: str, search: dict) -> None:
        """What the search that chose a parent's config spent and found (study.search.driver.choose_and_record): compute as
        metrics (search_trials, search_trial_epochs, search_trial_seconds, search_wall_seconds), boundary warnings
        and robust selection's verdict as tags, best_config.yaml, selection.yaml and the search figures as artifacts
        under search/."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(f"search_{name}", float(value), now, 0) for name, value in search["compute"].items()]
        tags = {"search.boundary_warnings": "; ".join(search["boundary_warnings"]) or "none"}
        selection = search.get("selection")
        if selection:
            tags["search.selection"] = selection["reason"][:5000]
            tags["search.selection_candidates"] = json.dumps(
                [{key: row[key] for key in ("trial_id", "search_value", "values", "mean")}
                 for row in selection["candidates"]])[:5000]
        self.client.log_batch(parent_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
        for path in search["files"]:
            self.client.log_artifact(parent_id, str(path), "search")

    def seed_runs(self, parent_id: str) -> list:
        return self.search(f"tags.`{PARENT_TAG}` = '{parent_id}' AND tags.`{ROLE}` = 'seed'")

    def finished_seeds(self, parent_id: str) -> dict[int, object]:
        """seed -> its FINISHED child run. Children left RUNNING by a killed process are marked FAILED."""
        return self.seed_outcomes(parent_id)[0]

    def seed_outcomes(self, parent_id: str) -> tuple[dict[int, object], dict[int, object]]:
        """(finished, diverged): seed -> its FINISHED child run, and seed -> its latest diverged child run for the
        seeds that have no FINISHED run (a diverged seed retried with --retry-diverged that then finished counts
        as finished). A seed in neither is missing: never run, or cut off by a kill (a child left RUNNING by a
        killed process is marked FAILED here, without the `diverged` tag, so the next rerun trains it again)."""
        finished, diverged = {}, {}
        for run in self.seed_runs(parent_id):  # newest first: setdefault keeps the latest run of a seed
            seed = int(run.data.tags["seed"])
            if run.info.status == "FINISHED":
                finished.setdefault(seed, run)
            elif run.info.status == "FAILED" and "diverged" in run.data.tags:
                diverged.setdefault(seed, run)
            elif run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, status="FAILED")
        return finished, {seed: run for seed, run in diverged.items() if seed not in finished}

    def log_seed(self, parent_id: str, family: str, config: dict, history: list[dict], summary: dict,
                 tags: dict[str, str], texts: dict[str, str] | None = None, figures: dict | None = None) -> str:
        """One child run with every epoch's metrics (step=epoch) and the seed's summary (at the final step: the
        test stats, n_params, train_seconds, ...), then its artifacts: `texts` {path: text} (per_class/<head>.csv)
        and `figures` {path: matplotlib figure} (per_class/<head>_confusion.png); FINISHED last."""
        from mlflow.entities import Metric, Param

        seed = config["seed"]
        run = self.client.create_run(self.experiment_id, run_name=f"{family}__seed{seed}", tags={
            ROLE: "seed", PARENT_TAG: parent_id, "family": family, "config_hash": config_hash(config),
            "task": config.get("task", "digit_pairs"), "seed": str(seed), **tags})
        run_id = run.info.run_id
        now = run.info.start_time
        metrics = [Metric(name, float(value), now, int(row["epoch"]))
                   for row in history for name, value in row.items() if name != "epoch"]
        final_step = int(history[-1]["epoch"])
        metrics += [Metric(name, float(value), now, final_step) for name, value in summary.items()
                    if name not in history[-1]]
        params = [Param(k, str(v)) for k, v in sorted(named_config(config).items())]
        for start in range(0, len(metrics), 1000):  # MLflow's batch limit is 1000 metrics
            self.client.log_batch(run_id, metrics=metrics[start:start + 1000],
                                  params=params if start == 0 else [])
        for path, text in (texts or {}).items():
            self.client.log_text(run_id, text, path)
        for path, figure in (figures or {}).items():
            self.client.log_figure(run_id, figure, path)
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def log_seed_surviving_outages(self, parent_id: str, log: Callable[[], object], seed: int) -> None:
        """`log()` (log_seed or log_failed_seed of `seed`) that survives the store going away for a while (a server
        restarted): after a store error it waits and logs the seed again, up to STORE_OUTAGE_SECONDS. MLflow's client
        retries only what the server did not get; a request cut off mid-way (was its run created? finished?) ends
        here. So before each new try the seed's outcome is read back: logged once, never twice (a run left RUNNING
        by the cut-off try is marked FAILED by seed_outcomes, and never counts)."""
        try:
            log()
            return
        except Exception as exc:
            if not is_store_error(exc):
                raise
            first = exc
        print(f"  the tracking store at {self.uri} stopped answering while seed {seed} was logged; trying again "
              f"for up to {STORE_OUTAGE_SECONDS // 60} minutes", flush=True)
        deadline, wait = time.monotonic() + STORE_OUTAGE_SECONDS, 1.0
        while time.monotonic() < deadline:
            time.sleep(wait)
            wait = min(2 * wait, 30.0)
            try:
                finished, diverged = self.seed_outcomes(parent_id)
                if seed not in finished and seed not in diverged:
                    log()
                return
            except Exception as exc:
                if not is_store_error(exc):
                    raise
        raise first

    def log_failed_seed(self, parent_id: str, family: str, config: dict, reason: str, tags: dict[str, str]) -> None:
        """A seed that could not finish (its loss diverged): a FAILED child tagged `diverged` with the reason. It
        counts as done, a failure of its config (seed_outcomes); only `study.rerun --retry-diverged` trains it again."""
        from mlflow.entities import Param

        seed = config["seed"]
        run = self.client.create_run(self.experiment_id, run_name=f"{family}__seed{seed}", tags={
            ROLE: "seed", PARENT_TAG: parent_id, "family": family, "config_hash": config_hash(config),
            "task": config.get("task", "digit_pairs"), "seed": str(seed), "diverged": reason[:500], **tags})
        self.client.log_batch(run.info.run_id,
                              params=[Param(k, str(v)) for k, v in sorted(named_config(config).items())])
        self.client.set_terminated(run.info.run_id, status="FAILED")

    def finish_parent(self, parent_id: str, metrics: dict[str, float], tags: dict[str, str], config_yaml: str,
                      figure=None) -> None:
        """The parent's summary metrics and tags, its config.yaml and learning-curve figure; FINISHED last."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        note = parent_description({**self.client.get_run(parent_id).data.tags, **tags}, metrics)
        self.client.log_batch(parent_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              tags=[RunTag(k, v) for k, v in {**tags, NOTE_TAG: note}.items()])
        self.client.log_text(parent_id, config_yaml, "config.yaml")
        if figure is not None:
            self.client.log_figure(parent_id, figure, "learning_curves.png")
        self.end_run(parent_id, "FINISHED")

    def end_run(self, run_id: str, status: str) -> None:
        self.client.set_terminated(run_id, status=status)

    def log_report(self, paths: list) -> str:
        """A `report` run holding the report's files; returns its id."""
        run = self.client.create_run(self.experiment_id, run_name="report", tags={ROLE: "report"})
        for path in paths:
            self.client.log_artifact(run.info.run_id, str(path))
        self.end_run(run.info.run_id, "FINISHED")
        return run.info.run_id

    def artifact_files(self, artifact_uri: str, folder: str, names: tuple[str, ...] | None = None,
                       suffix: str = "") -> dict[str, bytes]:
        """File name -> bytes of the files in `folder` of a run's artifacts (only `names`, or those ending in
        `suffix`); {} when the run has no such folder. Straight from the run's artifact store (`artifact_uri`, from
        a run already searched): one listing and one download per file. The client's download_artifacts(run_id, ...)
        first reads the run and, in MLflow 3, searches its logged models, on every call: requests that a server with
        logins answers only after checking the password again (a few tenths of a second each)."""
        import tempfile

        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            repository = get_artifact_repository(artifact_uri, tracking_uri=self.uri)
            paths = [entry.path for entry in repository.list_artifacts(folder) if not entry.is_dir]
            wanted = [path for path in paths if (Path(path).name in names if names else path.endswith(suffix))]
            with tempfile.TemporaryDirectory() as local:
                return {Path(path).name: Path(repository.download_artifacts(path, local)).read_bytes()
                        for path in wanted}
        except Exception:  # noqa: BLE001 - MlflowException or OSError: the run has no such folder
            return {}

    def histories(self, run_id: str, names: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
        return {name: sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, name))
                for name in names}


def ui_link(uri: str, experiment_id: str) -> str:
    """Where the MLflow UI shows an experiment's training runs. MLflow 3.17's UI opens an experiment on the page of
    its GenAI / Model training switch (default GenAI: traces), whatever the experiment's kind tag says; the runs
    route with workflowType=machine_learning opens the runs and turns the switch to Model training."""
    route = f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{route}"
    return f"mlflow ui --backend-store-uri {uri}, then open http://127.0.0.1:5000/{route}"


def parent_description(tags: dict[str, str], metrics: dict[str, float]) -> str:
    """The parent run's description in the MLflow UI: what it is and its result in one line, e.g. `sep_aux on
    digit_pairs, config 3f2a9c0d1e7b: test/acc 0.9712 ± 0.0051 (mean ± std), 95% CI [0.9676, 0.9748]; 10 seeds
    finished, 0 diverged`."""
    def number(name: str) -> float | None:
        value = metrics.get(name)
        return float(value) if value is not None and math.isfinite(value) else None

    primary = tags.get("primary_metric", "test/acc")
    head = (f"{tags.get('preset') or tags.get('family', '?')}"
            + (f" ({tags['reference']})" if tags.get("reference") else "")
            + f" on {tags.get('task', '?')}, config {tags.get('config_hash', '?')}"
            + (f", tuned with study seed {tags['study_seed']}" if tags.get("study_seed") else ""))
    n_diverged = int(metrics.get("n_diverged", 0))
    counts = f"{int(metrics.get('n_finished', 0))} seeds finished, {n_diverged} diverged"
    if n_diverged and "failure_value" in tags:
        counts += f" (entered at {tags['failure_value']})"
    mean, std = number(f"{primary}_mean"), number(f"{primary}_std")
    if mean is None:
        return f"{head}: no {primary}; {counts}"
    result = f"{primary} {mean:.4f}" + (f" ± {std:.4f} (mean ± std)" if std is not None else "")
    low, high = number(f"{primary}_ci95_low"), number(f"{primary}_ci95_high")
    if low is not None and high is not None:
        result += f", 95% CI [{low:.4f}, {high:.4f}]"
    return f"{head}: {result}; {counts}"


LOGIN_VARIABLES = "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"


def check_no_login_in(uri: str) -> None:
    """A password in the URI would be printed (the UI link) and kept in shell histories: refused, without echoing
    it."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme in ("http", "https") and (parts.username or parts.password):
        raise StudyError(f"the tracking URI holds a login ({parts.scheme}://USER:PASSWORD@{parts.hostname}...): "
                         f"give it in {LOGIN_VARIABLES} instead, never in a URI")


def refused_login(uri: str, experiment: str, exc: Exception) -> str | None:
    """One line naming what to set or ask for, when a tracking server with logins (`mlflow server --app-name
    basic-auth`) refused this client; None for any other error. The server answers 401 alike for no login, an
    unknown user and a wrong password: whether a login was given tells the first from the others."""
    code = getattr(exc, "error_code", None)
    if code not in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        return None
    from mlflow.utils.credentials import read_mlflow_creds  # the variables, else ~/.mlflow/credentials

    user = read_mlflow_creds().username
    if code == "PERMISSION_DENIED":
        return (f"user {user!r} may not log to experiment {experiment!r} at the tracking server {uri}: ask its "
                f"owner or the server's admin for EDIT permission on it, or name another --experiment")
    if not user:
        return f"the tracking server at {uri} needs a login: set {LOGIN_VARIABLES}"
    return (f"the tracking server at {uri} refused the login of user {user!r}: wrong password or no such user "
            f"(MLFLOW_TRACKING_PASSWORD)")


def is_store_error(exc: BaseException) -> bool:
    """An error of the tracking store itself (MLflow's, the HTTP connection's, the database's): not the study's."""
    import requests
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError  # MLflow's SQL stores

    return isinstance(exc, (MlflowException, requests.RequestException, SQLAlchemyError))


def check_reachable(uri: str) -> None:
    """Fail fast, in one line, when an HTTP tracking server does not answer (MLflow itself retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=5)
    except requests.RequestException as exc:
        raise StudyError(f"cannot reach the MLflow server --tracking-uri {uri}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise StudyError(f"--tracking-uri {uri} is not an MLflow server (GET /health answered "
                         f"{response.status_code})")
