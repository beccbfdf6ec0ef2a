"""Exceptions delbench raises on purpose.

Every error a user can cause derives from :class:`DelbenchError`; the CLI prints those as
one line (no traceback unless ``--debug``).
"""


def one_line(text: str) -> str:
    """A message on one line: its lines joined by spaces."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


class DelbenchError(Exception):
    """Base class for errors caused by input, configuration or environment."""


class RegistryError(DelbenchError, KeyError):
    """An unknown or duplicate plugin name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(DelbenchError, ValueError):
    """A protocol or command-line setting that cannot be used."""


class DatasetError(DelbenchError):
    """A dataset that is missing, laid out unexpectedly, or holds an unreadable file."""


class SelectionError(DelbenchError, ValueError):
    """A selector's input or output breaks the selector contract."""


class WriteError(DelbenchError):
    """A result, subset or checkpoint file that could not be written (disk full, no
    permission, a directory in the way); the message names the file."""


class SubmissionError(DelbenchError):
    """A submission archive that cannot be opened safely (a member with an absolute name,
    ``..``, a link or a device) or lacks what a submission holds; the message names it."""


class LockError(DelbenchError):
    """A work directory held by another running ``delbench run`` (its pid is named)."""


class Interrupted(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` (Ctrl-C, or raised by plugin code) that stopped a run, saying
    where: the cell, its stage and the line that was running. It still stops the run, as
    any ``KeyboardInterrupt`` does; the CLI prints it and exits 130, finished cells kept."""


class StageTimeout(BaseException):
    """A stage of a cell (``select``, ``pretrain``, ``evaluate``) ran past its configured
    ``timeouts`` entry.

    A ``BaseException``, like ``KeyboardInterrupt``, on purpose: it is raised inside plugin
    code by the runner's alarm, and a plugin's own ``except Exception`` must not swallow it.
    The runner catches it and records the cell as failed.
    """

    def __init__(self, stage: str, seconds: float) -> None:
        super().__init__(stage, seconds)
        self.stage, self.seconds = stage, seconds

    def __str__(self) -> str:
        return f"the {self.stage} stage ran past its {self.seconds:g} s timeout (timeouts.{self.stage})"
