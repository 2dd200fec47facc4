"""Ctrl-C between batches: while a backup is kept, SIGINT only sets a flag the loop checks after a batch."""
import contextlib
import signal
import threading


@contextlib.contextmanager
def deferred_interrupts(enabled):
    """Yields a function telling whether Ctrl-C was pressed; only in the main thread (signals go there)."""
    pressed = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)
