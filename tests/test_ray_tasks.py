"""Ctrl-C while the driver waits on Ray tasks (study.infra.ray_tasks), and what a Ray worker imports to run one."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from study.infra.ray_tasks import ctrl_c_remembered


class CtrlCWhileCollected:
    """Presses Ctrl-C while Python collects it: the KeyboardInterrupt is raised inside __del__, where Python drops
    it ("Exception ignored in ..."), as it does inside SQLAlchemy's garbage-collection callbacks."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes, here in __del__
            pass


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped KeyboardInterrupt
def test_a_ctrl_c_that_python_drops_in_a_gc_callback_is_raised_at_the_next_check():
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_remembered() as check_ctrl_c:
        CtrlCWhileCollected()  # the KeyboardInterrupt is printed as ignored, and nothing is raised here
        with pytest.raises(KeyboardInterrupt):
            check_ctrl_c()
    assert signal.getsignal(signal.SIGINT) is before  # the handler from before is back


def test_without_a_ctrl_c_the_check_passes_and_a_ctrl_c_still_raises_where_python_is():
    with ctrl_c_remembered() as check_ctrl_c:
        check_ctrl_c()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        with pytest.raises(KeyboardInterrupt):
            check_ctrl_c()


def test_outside_the_main_thread_no_handler_is_set():
    before, seen = signal.getsignal(signal.SIGINT), []

    def wait():
        with ctrl_c_remembered() as check_ctrl_c:
            seen.append(signal.getsignal(signal.SIGINT))
            check_ctrl_c()

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join()
    assert seen == [before]


def test_what_a_ray_worker_imports_to_run_a_trial_or_a_seed_is_light():
    """A worker imports the module of the function it runs: the search's trainable (study.search.trial) and a rerun's
    seed task (study.runs.seed_tasks) import torch only when they run, and never MLflow, Optuna, SciPy, pandas or
    matplotlib, which the driver's modules need (~1 s of SciPy alone in every rerun worker before the split)."""
    heavy = ["torch", "mlflow", "optuna", "scipy", "pandas", "matplotlib", "ray.tune"]
    probe = (f"import sys, study.search.trial, study.runs.seed_tasks; "
             f"print([m for m in {heavy!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", done.stdout
