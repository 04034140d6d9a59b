"""Ctrl-C while the driver waits on Ray tasks (study.infra.ray_tasks)."""

import os
import signal
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
