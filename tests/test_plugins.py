"""Plugins: a user's module registering a family or a task, loaded by --plugin / STUDY_PLUGINS in the driver and in
every Ray worker (study.infra.plugins)."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from helpers import family_source, run_in_process
from study.families import FAMILIES, get_family
from study.infra.errors import StudyError
from study.infra.plugins import PLUGINS_VARIABLE, load_plugins, worker_runtime_env
from study.infra.ray_session import LOCAL_RAY_SETTINGS
from study.tasks import TASKS

TASK_SOURCE = """\
from study.tasks import register_task
from study.tasks.digit_pairs import DigitPairs


@register_task
class {cls}(DigitPairs):
    name = "{task}"
"""


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(autouse=True)
def clean_slate(monkeypatch, tmp_path):
    """Each test's plugins leave no family, task, module or sys.path entry behind, and STUDY_PLUGINS is unset.

    Only the plugins' own modules (files under the test's tmp_path) are forgotten: a library first imported during
    the test stays, as a second copy of it would break it (SQLAlchemy's compiled statement cache then met enum
    members of a first copy of its own module, "'InternalTraversal' object is not callable", in later tests)."""
    monkeypatch.delenv(PLUGINS_VARIABLE, raising=False)
    registries = [(registry, dict(registry.entries), dict(registry.modules)) for registry in (FAMILIES, TASKS)]
    modules, path = set(sys.modules), list(sys.path)
    yield
    for registry, entries, owners in registries:
        registry.entries.clear(), registry.entries.update(entries)
        registry.modules.clear(), registry.modules.update(owners)
    for name in set(sys.modules) - modules:
        if str(getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]
    sys.path[:] = path


def one_line_error(names) -> str:
    with pytest.raises(StudyError) as caught:
        load_plugins(names)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_py_file_given_by_its_path_registers_its_family_under_the_file_name(tmp_path):
    plugin = write(tmp_path / "my_families.py", family_source("plugin_mlp"))
    assert load_plugins([str(plugin)]) == [str(plugin.resolve())]
    assert FAMILIES.modules["plugin_mlp"] == "my_families" and sys.modules["my_families"].__file__ == str(plugin)

    import torch
    from study.tasks.digit_pairs import SPEC

    model = get_family("plugin_mlp", "digit_pairs").builder(SPEC, width=4)
    assert model(torch.zeros(3, 2, 14, 14))["z"].shape == (3,)
    assert load_plugins([str(plugin)]) == [str(plugin.resolve())]  # a second load in the same process: a no-op


def test_a_relative_path_is_made_absolute_so_workers_and_other_folders_see_the_same_file(tmp_path, monkeypatch):
    write(tmp_path / "rel_families.py", family_source("plugin_rel"))
    monkeypatch.chdir(tmp_path)
    assert load_plugins(["./rel_families.py", "rel_families.py"]) == [str(tmp_path / "rel_families.py")]
    assert "plugin_rel" in FAMILIES


def test_a_dotted_name_is_imported_from_the_current_folder_and_shipped_to_workers(tmp_path, monkeypatch):
    write(tmp_path / "lab" / "__init__.py", "")
    write(tmp_path / "lab" / "families.py", family_source("plugin_lab"))
    monkeypatch.chdir(tmp_path)
    sys.path[:] = [entry for entry in sys.path if entry not in ("", str(tmp_path))]  # as from an installed script
    assert load_plugins(["lab.families"]) == ["lab.families"]
    assert FAMILIES.modules["plugin_lab"] == "lab.families"
    env = worker_runtime_env(["lab.families"])
    assert env["env_vars"] == {PLUGINS_VARIABLE: "lab.families"}
    assert env["py_modules"] == [str(tmp_path / "lab")]  # the top-level package: not installed on other nodes


def test_a_package_folder_given_by_its_path_is_imported_under_its_name(tmp_path):
    write(tmp_path / "folder_plugin" / "__init__.py", "from folder_plugin.families import *  # noqa\n")
    write(tmp_path / "folder_plugin" / "families.py", family_source("plugin_folder"))
    assert load_plugins([f"{tmp_path}/folder_plugin/"]) == [str(tmp_path / "folder_plugin")]
    assert FAMILIES.modules["plugin_folder"] == "folder_plugin.families"
    assert worker_runtime_env([str(tmp_path / "folder_plugin")])["env_vars"][PLUGINS_VARIABLE] == "folder_plugin"


def test_study_plugins_adds_to_the_flag_in_order_each_once(tmp_path, monkeypatch):
    first = write(tmp_path / "first_plugin.py", family_source("plugin_first"))
    second = write(tmp_path / "second_plugin.py", family_source("plugin_second"))
    task = write(tmp_path / "task_plugin.py", TASK_SOURCE.format(cls="PluginPairs", task="plugin_pairs"))
    monkeypatch.setenv(PLUGINS_VARIABLE, f" {second}, {first},,{task}")
    assert load_plugins([str(first)]) == [str(first), str(second), str(task)]
    assert {"plugin_first", "plugin_second"} <= set(FAMILIES) and TASKS.modules["plugin_pairs"] == "task_plugin"
    assert load_plugins(None) == [str(second), str(first), str(task)]  # STUDY_PLUGINS alone


def test_a_missing_module_or_file_is_one_line_naming_it(tmp_path):
    message = one_line_error(["no_such_plugin_module"])
    assert "plugin 'no_such_plugin_module': no module named 'no_such_plugin_module'" in message
    message = one_line_error(["no_such_package.families"])
    assert "no module named 'no_such_package'" in message
    message = one_line_error([str(tmp_path / "nowhere.py")])
    assert "nowhere.py" in message and "no such file" in message
    assert "neither a path" in one_line_error(["my-families"])


def test_a_plugin_missing_a_dependency_is_told_apart_from_a_missing_plugin(tmp_path):
    plugin = write(tmp_path / "needs_dep.py", "import numpy\nimport not_a_real_dependency_xyz\n")
    message = one_line_error([str(plugin)])
    assert message == (f"plugin '{plugin}' failed to import: ModuleNotFoundError: No module named "
                       f"'not_a_real_dependency_xyz' (at needs_dep.py:2)")
    assert "needs_dep" not in sys.modules


def test_a_plugin_raising_is_one_line_naming_it_and_where(tmp_path, monkeypatch):
    write(tmp_path / "raises_plugin.py", "WIDTHS = {}\n\n\ndef check():\n    raise ValueError('no widths table')\n\n\n"
                                         "check()\n")
    monkeypatch.chdir(tmp_path)
    message = one_line_error(["raises_plugin"])  # by its dotted name: the same line
    assert message == ("plugin 'raises_plugin' failed to import: ValueError: no widths table "
                       "(at raises_plugin.py:5)")
    message = one_line_error(["./raises_plugin.py"])
    assert message.startswith("plugin './raises_plugin.py' failed to import: ValueError: no widths table")
    write(tmp_path / "bad_syntax.py", "def broken(:\n")
    assert "failed to import: SyntaxError: invalid syntax (at bad_syntax.py:1)" in one_line_error(["bad_syntax.py"])


def test_a_family_name_registered_by_two_plugins_is_refused_naming_both(tmp_path):
    first = write(tmp_path / "lab_a.py", family_source("plugin_twice"))
    second = write(tmp_path / "lab_b.py", family_source("plugin_twice"))
    message = one_line_error([str(first), str(second)])
    assert message == f"plugin '{second}': family 'plugin_twice' is registered twice: by lab_a and by lab_b"
    assert FAMILIES.modules["plugin_twice"] == "lab_a"


def test_a_plugin_cannot_take_a_built_in_name(tmp_path):
    plugin = write(tmp_path / "shadows.py", family_source("base") + "\n" +
                   TASK_SOURCE.format(cls="Pairs", task="digit_pairs"))
    message = one_line_error([str(plugin)])
    assert "family 'base' is registered twice: by study.families.pair_nets and by shadows" in message


def test_a_file_named_like_a_loaded_module_is_refused(tmp_path):
    plugin = write(tmp_path / "json.py", "")
    assert "module name 'json' is taken already" in one_line_error([str(plugin)])


def test_the_worker_runtime_env(tmp_path):
    assert worker_runtime_env([]) == {}
    plugin = str(tmp_path / "my_families.py")
    env = worker_runtime_env([plugin, "study.families.pair_nets", "json"])
    assert env == {"env_vars": {PLUGINS_VARIABLE: "my_families,study.families.pair_nets,json"},
                   "worker_process_setup_hook": "study.infra.plugins.import_in_worker",
                   "py_modules": [plugin]}  # installed modules (this package, the standard library) are not shipped


class FamilyAtUnpickling:
    """Pickled as a call of get_family: a worker unpickling it looks the plugin family up there and then, so the
    plugin must be imported before the worker deserializes a task's arguments."""

    def __init__(self, family: str):
        self.family = family

    def __reduce__(self):
        return get_family, (self.family, "digit_pairs")


def build_in_worker(family_entry, family: str) -> dict:
    """In a Ray worker: build the plugin family by name, run it, and say where its module came from."""
    import torch

    from study.families import get_family
    from study.tasks.digit_pairs import SPEC

    model = get_family(family, "digit_pairs").builder(SPEC, width=4)
    module = sys.modules[family_entry.builder.__module__]
    return {"shape": tuple(model(torch.zeros(2, 2, 14, 14))["z"].shape), "module_file": module.__file__,
            "pid": os.getpid()}


@pytest.mark.slow  # starts Ray
def test_every_ray_worker_imports_the_plugins_before_it_unpickles_a_task(tmp_path, monkeypatch):
    import ray
    from ray import cloudpickle

    plugin = write(tmp_path / "plugins_dir" / "ray_families.py", family_source("plugin_on_ray"))
    specs = load_plugins([str(plugin)])
    monkeypatch.chdir(tmp_path)  # not the plugin's folder: workers get the file from Ray, not from a path here
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # this test file is not importable in workers
    if ray.is_initialized():  # the worker's shared Ray (helpers.run_in_process), without the plugins' runtime_env;
        ray.shutdown()  # the next command that needs one starts it again
    ray.init(address="local", include_dashboard=False, num_cpus=2, logging_level="WARNING",
             runtime_env=worker_runtime_env(specs), _system_config=LOCAL_RAY_SETTINGS)  # the study's own Ray settings
    try:
        build = ray.remote(num_cpus=1)(build_in_worker)
        answers = ray.get([build.remote(FamilyAtUnpickling("plugin_on_ray"), "plugin_on_ray") for _ in range(4)],
                          timeout=120)
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert {answer["shape"] for answer in answers} == {(2,)}
    assert all(answer["pid"] != os.getpid() for answer in answers)
    # shipped by py_modules into Ray's runtime resources, the same file on every node
    assert all("runtime_resources" in answer["module_file"] and answer["module_file"].endswith("ray_families.py")
               for answer in answers)




@pytest.mark.parametrize("case", ["fails to import", "takes a taken name"])
def test_a_bad_plugin_ends_a_command_in_one_line_before_anything_is_written(tmp_path, case):
    if case == "fails to import":
        plugin = write(tmp_path / "broken_plugin.py", "raise RuntimeError('half written')\n")
        env, expected = {}, f"plugin '{plugin}' failed to import: RuntimeError: half written (at broken_plugin.py:1)"
    else:  # one module from --plugin, the other from STUDY_PLUGINS
        plugin = write(tmp_path / "lab_a.py", family_source("plugin_mlp"))
        other = write(tmp_path / "lab_b.py", family_source("plugin_mlp"))
        env = {PLUGINS_VARIABLE: str(other)}
        expected = f"plugin '{other}': family 'plugin_mlp' is registered twice: by lab_a and by lab_b"
    done = run_in_process("study.tune", "--family", "plugin_mlp", "--plugin", str(plugin), "--study-dir",
                          str(tmp_path / "study"), "--no-rerun", env=env)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {expected}", done.stderr
    assert not (tmp_path / "study").exists()
