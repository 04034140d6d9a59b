"""The driver waiting on its Ray tasks (rerun seeds, robust-selection fits): each result handled as it lands, and
one Ctrl-C always stops the wait."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable


@contextmanager
def ctrl_c_remembered():
    """Yields a check that raises KeyboardInterrupt once Ctrl-C was pressed in the block.

    A Ctrl-C raises KeyboardInterrupt wherever Python is, and Python drops an exception raised inside a
    garbage-collection callback ("Exception ignored in ..."; SQLAlchemy has such callbacks, and MLflow logs through
    it): that Ctrl-C would be lost and the seeds would train on. So the press is also remembered, and the check
    raises it again. Outside the main thread no handler can be set: the check does nothing there."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def on_ctrl_c(signum, frame):
        pressed.set()
        raise KeyboardInterrupt

    def check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def handle_each(pending: dict, handle: Callable[[object, object], None], idle: Callable[[], None] = lambda: None,
                ) -> None:
    """Call `handle(ref, key)` for each of `pending`'s object refs (ref -> key) as its task ends; `idle()` after each
    second without news. On Ctrl-C (KeyboardInterrupt) the tasks still running are left alone: the command ends and
    Ray ends the tasks of a driver that exits, while cancelling them here could race a task's reply and abort the
    process inside Ray's core worker ("Tried to complete task that was not pending"), exit status 1 instead of 130.
    On any other error they are cancelled: the caller may go on."""
    import ray

    with ctrl_c_remembered() as check_ctrl_c:
        try:
            while pending:
                check_ctrl_c()
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not ready:
                    idle()
                    continue
                [ref] = ready
                handle(ref, pending.pop(ref))
            check_ctrl_c()
        except KeyboardInterrupt:
            raise  # the tasks end with the driver (see above)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
