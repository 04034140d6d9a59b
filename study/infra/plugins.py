"""A user's own families and tasks: modules named by `--plugin MODULE` (repeatable) and `STUDY_PLUGINS=mod1,mod2`,
imported in the driver and in every Ray worker before anything is built.

A MODULE is a path to a .py file or to a package folder (`--plugin ./my_families.py`, imported under its file
name, `my_families`), or a dotted module name importable from sys.path or the current folder (`--plugin
my_lab.families`). Importing it runs its @register_family / @register_task decorators.

Ray workers are other processes, possibly on other machines: they know nothing of what the driver imported.
`worker_runtime_env` gives ray.init the job's runtime_env, so that every worker process of the job (Tune trials,
rerun seeds, batched reruns) runs `import_in_worker` as its setup hook when it starts, before it receives, unpickles
or runs any task; plugin files and packages that are not installed are shipped to every node with `py_modules`.

    specs = load_plugins(args.plugin)                        # in the driver, before --family / --task are looked up
    ray.init(..., runtime_env=worker_runtime_env(specs) or None)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType

from study.infra.errors import StudyError

PLUGINS_VARIABLE = "STUDY_PLUGINS"
SETUP_HOOK = "study.infra.plugins.import_in_worker"


def plugin_names(names: list[str] | None) -> list[str]:
    """--plugin's names, then STUDY_PLUGINS' (comma-separated), blanks dropped, each once, in that order."""
    from_env = os.environ.get(PLUGINS_VARIABLE, "").split(",")
    unique: list[str] = []
    for name in [*(names or []), *from_env]:
        name = name.strip()
        if name and name not in unique:
            unique.append(name)
    return unique


def is_path(name: str) -> bool:
    """A .py file or a name with a slash is a path; anything else a dotted module name."""
    return name.endswith(".py") or "/" in name or os.sep in name


def load_plugins(names: list[str] | None) -> list[str]:
    """Import the modules named by --plugin (`names`) and STUDY_PLUGINS, in that order, each once.

    Returns their specs as workers must load them too: a path made absolute (so it means the same from any folder),
    or the dotted name. A plugin that is missing or fails to import is a StudyError of one line naming it and why;
    so is a family or task name it registers that another module registered already (the registry names both)."""
    specs: list[str] = []
    for name in plugin_names(names):
        spec = str(Path(name).expanduser().resolve()) if is_path(name) else name
        if spec not in specs:
            import_plugin(spec, shown=name)
            specs.append(spec)
    return specs


def import_plugin(spec: str, shown: str | None = None) -> ModuleType:
    """Import one plugin: a path (absolute) or a dotted name. `shown`: the name as the user wrote it, for errors."""
    shown = shown or spec
    # the built-in families and tasks first: a plugin registering one of their names is then refused at once
    import study.families  # noqa: F401
    import study.tasks  # noqa: F401

    if is_path(spec):
        return import_path(Path(spec), shown)
    if not all(part.isidentifier() for part in spec.split(".")):
        raise StudyError(f"plugin {shown!r} is neither a path to a .py file nor a dotted module name")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # as `python -m` would: a module in the current folder is found
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name and (spec == exc.name or spec.startswith(exc.name + ".")):
            raise StudyError(f"plugin {shown!r}: no module named {exc.name!r} (neither installed nor in the "
                             f"current folder {os.getcwd()}; a file is given by its path, e.g. "
                             f"./{spec.split('.')[-1]}.py)") from None
        raise StudyError(import_failure(shown, exc)) from None
    except StudyError as exc:
        raise StudyError(f"plugin {shown!r}: {exc}") from None
    except Exception as exc:  # whatever the module raised while it ran: one line, naming where
        raise StudyError(import_failure(shown, exc)) from None


def import_path(path: Path, shown: str) -> ModuleType:
    """Import a .py file or a package folder under its own name (the file's stem, the folder's name)."""
    if path.is_dir():
        location = path / "__init__.py"
        if not location.is_file():
            raise StudyError(f"plugin {shown!r}: {path} is a folder without __init__.py, not a package")
        name, search = path.name, [str(path)]
    elif path.suffix == ".py":
        if not path.is_file():
            raise StudyError(f"plugin {shown!r}: no such file {path}")
        location, name, search = path, path.stem, None
    else:
        raise StudyError(f"plugin {shown!r}: expected a .py file or a package folder, got {path}")
    if not name.isidentifier():
        raise StudyError(f"plugin {shown!r}: {name!r} is not a valid module name (use letters, digits and _)")
    loaded = sys.modules.get(name)
    if loaded is not None:
        if Path(getattr(loaded, "__file__", "") or "").resolve() == location.resolve():
            return loaded  # loaded already (by an earlier command in this process)
        where = getattr(loaded, "__file__", None) or "built in"
        raise StudyError(f"plugin {shown!r}: module name {name!r} is taken already by {where}; rename the file")
    module_spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=search)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # before it runs, as `import` does: pickles and registries name it by this name
    try:
        module_spec.loader.exec_module(module)
    except StudyError as exc:
        del sys.modules[name]
        raise StudyError(f"plugin {shown!r}: {exc}") from None
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise StudyError(import_failure(shown, exc)) from None
    return module


def import_failure(shown: str, exc: BaseException) -> str:
    """'plugin X failed to import: ValueError: boom (at my_families.py:7)' from what the module raised."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        text, where = exc.msg, f"{Path(exc.filename).name}:{exc.lineno}"
    else:
        frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not frame.filename.startswith("<")]
        # the deepest line of the user's code: not of an installed library (say torch) the plugin called
        library = tuple({sysconfig.get_paths()[key] for key in ("stdlib", "purelib", "platlib")})
        frames = [frame for frame in frames if not frame.filename.startswith(library)] or frames
        if frames:
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
    return (f"plugin {shown!r} failed to import: {type(exc).__name__}{': ' + text if text else ''}"
            f"{f' (at {where})' if where else ''}")


def worker_name(spec: str) -> str:
    """The name a worker imports `spec` by: a path's module name, or the dotted name itself."""
    return Path(spec).stem if is_path(spec) else spec


def installed(top_level: str) -> bool:
    """Whether a top-level module comes from an installed distribution (every node of a cluster is expected to
    have the same environment) rather than from a folder of the user's."""
    if top_level in sys.stdlib_module_names:
        return True
    try:
        return top_level in importlib.metadata.packages_distributions()
    except Exception:  # a broken distribution's metadata: ship the module rather than guess
        return False


def shipped_path(spec: str) -> str | None:
    """What py_modules must send to other nodes for `spec`: the file or package folder of a path, or of a dotted
    name's top-level module when that is not installed; None when workers can import it already."""
    if is_path(spec):
        return spec
    top_level = spec.split(".")[0]
    if installed(top_level):
        return None
    module = sys.modules.get(top_level)
    if module is None:
        return None
    locations = list(getattr(module, "__path__", []) or [])
    if len(locations) == 1:
        return str(Path(locations[0]).resolve())
    if not locations and getattr(module, "__file__", None):
        return str(Path(module.__file__).resolve())
    return None  # a namespace package over several folders: left to the workers' environment


def worker_runtime_env(specs: list[str]) -> dict:
    """ray.init's runtime_env making every worker of the job import the plugins `specs` (from load_plugins) when
    its process starts, before it runs a task: STUDY_PLUGINS (the names workers import) and the setup hook, plus
    py_modules shipping the plugins' files to every node. {} without plugins: plain runs pay nothing."""
    if not specs:
        return {}
    shipped: list[str] = []
    for spec in specs:
        path = shipped_path(spec)
        if path is not None and path not in shipped:
            shipped.append(path)
    runtime_env: dict = {"env_vars": {PLUGINS_VARIABLE: ",".join(worker_name(spec) for spec in specs)},
                         "worker_process_setup_hook": SETUP_HOOK}
    if shipped:
        runtime_env["py_modules"] = shipped
    return runtime_env


def import_in_worker() -> None:
    """The worker process setup hook: import every module STUDY_PLUGINS names (as worker_runtime_env set it).

    Ray runs it in each new worker process of the job (ray/_private/workers/default_worker.py) before the worker's
    task loop starts, so before any trial's or seed's function and arguments are unpickled. A failure (the driver
    imported the plugin, so: a node without one of its dependencies) raises: Ray ends that worker, prints its exit
    detail, this message and the traceback, on the driver's console, and the trial or seed fails as a dead worker
    (ActorDiedError / WorkerCrashedError) after Ray's retries."""
    for name in plugin_names([]):
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise RuntimeError(f"Ray worker {os.getpid()} on {platform.node()} cannot import plugin {name!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
