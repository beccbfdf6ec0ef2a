"""How every contract check reports: an ``AssertionError`` whose message starts with the
check's name and the plugin it failed for."""
from __future__ import annotations

from typing import Any, Callable


def named_check(check: Callable[[Any], None], subject: Any, what: str) -> Callable[[], None]:
    """``check(subject)`` as a no-argument callable named like the check.

    A breach (``AssertionError``) or an unexpected crash becomes ``AssertionError("<check>
    failed for <what>: …")`` with the cause chained, so a parametrised test names both.
    """
    check_name = check.__name__

    def run() -> None:
        try:
            check(subject)
        except AssertionError as exc:
            raise AssertionError(f"{check_name} failed for {what}: {exc}") from exc
        except Exception as exc:  # an unexpected crash fails the check, named, with its cause
            raise AssertionError(f"{check_name} failed for {what}: {type(exc).__name__}: {exc}") from exc

    run.__name__ = check_name
    return run
