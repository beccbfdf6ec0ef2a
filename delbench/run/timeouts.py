"""Stage timeouts: ``timeouts.<stage>`` of a protocol bounds each stage of a cell.

They use ``SIGALRM`` (``signal.setitimer``) in the main thread, which raises
:class:`~delbench.errors.StageTimeout` inside the stage. Chosen over running each stage in a
subprocess because a stage works on in-process state that a child would have to rebuild or
receive by pickling (the pool, memory-mapped embeddings, the model, RNG state that the
bitwise resume relies on) and would pay a torch import per stage; the cost of the choice is
that a stage blocked inside one long C call (a single huge matmul, a hung read) is stopped
only when that call returns to Python. Pre-training saves resumable states every
``pretrain.checkpoint_every`` steps, so a timed-out or killed pre-training continues where
it stopped on ``--resume``.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any

from delbench.errors import DelbenchError, StageTimeout


@contextlib.contextmanager
def stage_deadline(stage: str, seconds: float | None):
    """Raise :class:`~delbench.errors.StageTimeout` inside the block once it has run
    ``seconds`` (None: no limit); the module docstring says why an alarm signal."""
    if not seconds:
        yield
        return
    if threading.current_thread() is not threading.main_thread():
        raise DelbenchError(f"timeouts.{stage}: stage timeouts need the main thread (they use SIGALRM); "
                            f"run delbench there or remove the timeout")
    armed = [True]

    def alarm(signum: int, frame: Any) -> None:
        if armed[0]:  # a signal that lands after the block ended must not fail it
            raise StageTimeout(stage, seconds)

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
