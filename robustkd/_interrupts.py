"""Telling Ctrl-C from a callback that stops a fit: skorch's callbacks (``EarlyStopping``) raise
``KeyboardInterrupt`` to end training early, the very exception Ctrl-C raises.

robustkd's nets let Ctrl-C propagate (skorch swallows it) but must let a callback's stop end the fit
normally. In the main thread, with Python's default SIGINT handler in place, a fit watches SIGINT and
knows; elsewhere (threads, custom handlers) an interrupt raised from a skorch callback's own code counts as
a stop and any other as Ctrl-C.
"""
import contextlib
import signal
import threading

from skorch.callbacks import Callback

__all__ = ["watch_sigint", "is_ctrl_c"]


_SEEN = []  # one flag per active watch_sigint block (they nest: fit_resumable around a net's fit_loop)


def _handler(signum, frame):
    _SEEN[:] = [True] * len(_SEEN)
    signal.default_int_handler(signum, frame)


@contextlib.contextmanager
def watch_sigint():
    """Within the block, record whether SIGINT arrives (it still raises ``KeyboardInterrupt`` as usual).

    Yields
    ------
    callable
        ``seen()``: True or False, or None where SIGINT cannot be watched.
    """
    current = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if current not in (signal.default_int_handler, _handler):
        yield lambda: None
        return
    _SEEN.append(False)
    index = len(_SEEN) - 1
    if current is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handler)
    try:
        yield lambda: _SEEN[index]
    finally:
        del _SEEN[index:]
        if current is signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def is_ctrl_c(exc, seen):
    """Whether ``KeyboardInterrupt`` ``exc`` is Ctrl-C rather than a callback ending the fit.

    Parameters
    ----------
    exc : KeyboardInterrupt
        The exception.
    seen : bool or None
        What :func:`watch_sigint` recorded (None: unknown).
    """
    if seen is not None:
        return seen
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is None or not isinstance(tb.tb_frame.f_locals.get("self"), Callback)
