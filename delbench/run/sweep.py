"""The sweep: every cell of a protocol run into a work directory, cached and resumable.

One selection group (selector, ratio, seed) at a time: select (:mod:`delbench.run.select`),
pre-train (:mod:`delbench.run.pretrain`), then evaluate every task (and checkpoint epoch) on it
(:mod:`delbench.run.evaluate`), each row recorded as it ends (:mod:`delbench.run.rows`); then
the reference encoders. Fault isolation: a cell whose selection, pre-training or task raises,
returns something the contract refuses (a bad subset, a non-finite metric) or runs past its
stage's ``timeouts`` entry is recorded as ``failed`` with its ``stage`` and error, and the
sweep goes on.
"""
from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any, Callable

from delbench.errors import DelbenchError, Interrupted, StageTimeout
from delbench.protocol import Protocol, check_plugins, check_values
from delbench.run.context import RunContext, seed_everything, start_run, utc_now
from delbench.run.evaluate import cross_tasks, evaluate_task
from delbench.run.plan import Cell, group_cells, plan_groups, reference_cells
from delbench.run.pretrain import pretrain_checkpoints
from delbench.run.rows import SelectionFacts, make_row, record_row
from delbench.run.select import select_subset
from delbench.sdk.distributed import world_from_env
from delbench.store import ResultRow, lock_work_dir, read_rows

logger = logging.getLogger(__name__)


def run_protocol(protocol: Protocol, work_dir: str | Path, *, resume: bool = False,
                 config_text: str | None = None, progress: bool = True,
                 observers: list[Callable[[dict[str, Any]], None]] | None = None) -> list[ResultRow]:
    """Run every cell of ``protocol`` into ``work_dir``; returns the rows written this time.

    ``observers`` are called with each row's JSON record as it is written, like the
    ``delbench_cell_finished`` hook. The work dir's lock is held throughout: a second run
    into it raises :class:`~delbench.errors.LockError` naming the holder.
    """
    work_dir = Path(work_dir)
    if world_from_env().distributed:  # every rank would select, write rows and evaluate on its own
        raise DelbenchError("delbench run does not run under torchrun (every process would write the same rows); "
                            "run it as one process, or spread cells with --launcher local/slurm; torchrun serves "
                            "a backbone's pretrain and 'delbench embed'")
    check_values(protocol)  # load_protocol did too; a Protocol built in code is checked here
    check_plugins(protocol)
    with lock_work_dir(work_dir):
        return _run_locked(protocol, work_dir, resume, config_text, progress, observers)


def _run_locked(protocol: Protocol, work_dir: Path, resume: bool, config_text: str | None, progress: bool,
                observers: list[Callable[[dict[str, Any]], None]] | None) -> list[ResultRow]:
    from tqdm.auto import tqdm

    ctx = start_run(protocol, work_dir, resume, config_text, progress, observers)
    done = {row.key for row in read_rows(work_dir) if row.ok}
    seed_everything(min(protocol.seeds))
    written: list[ResultRow] = []
    bar = tqdm(plan_groups(protocol), desc="cells", disable=not progress, unit="subset")
    for cells in bar:
        bar.set_postfix_str(f"{cells[0].label} r={cells[0].ratio:g} s={cells[0].seed}")
        written += run_selection(ctx, cells, done)
    written += run_references(ctx, done)
    return written


#: what fails one cell (recorded with its error) rather than the run: any error of a plugin,
#: a stage past its timeout, a plugin calling sys.exit. A KeyboardInterrupt stops the run,
#: and a result file that cannot be written (WriteError, raised by _finish) stops it too:
#: nothing could be recorded after it.
CELL_FAULTS = (Exception, StageTimeout, SystemExit)


def interrupted(exc: KeyboardInterrupt, stage: str, key: str) -> Interrupted:
    """A KeyboardInterrupt that stops the sweep, named: the cell, its stage and the line of
    code that was running (a plugin that raised it, or wherever Ctrl-C came)."""
    if isinstance(exc, Interrupted):
        return exc
    frames = traceback.extract_tb(exc.__traceback__)
    where = f", raised at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return Interrupted(f"{type(exc).__name__} in the {stage} stage of {key}{where}; the cells finished before it "
                       f"are kept, 'delbench run --resume' goes on")


def run_selection(ctx: RunContext, cells: list[Cell], done: set[str]) -> list[ResultRow]:
    """One (selector, ratio, seed): select, pre-train, then every task (and checkpoint epoch).

    A failure while selecting or pre-training fails every cell of the group; a failure in
    one task fails that cell only.
    """
    protocol = ctx.protocol
    selector, ratio, seed = cells[0].selector, cells[0].ratio, cells[0].seed
    todo = [c for c in group_cells(protocol, cells) if c.key not in done]
    if not todo:
        return []
    started_at = utc_now()
    stage = "select"
    try:
        subset, meta = select_subset(ctx, selector, ratio, seed)
        stage = "pretrain"
        seed_everything(seed)
        checkpoints, pre = pretrain_checkpoints(ctx, subset, seed)
    except CELL_FAULTS as exc:
        return [record_row(ctx, make_row(ctx, c, started_at, exc, stage=stage)) for c in todo]
    except KeyboardInterrupt as exc:
        raise interrupted(exc, stage, todo[0].key) from exc
    facts = SelectionFacts(subset, meta, pre)
    written = []
    for cell in todo:
        if cell.pretrain_epoch not in checkpoints:
            logger.info("%s: epoch %g lies beyond this subset's %d-step schedule; no row", cell.key,
                        cell.pretrain_epoch, pre["steps"])
            continue
        cell_started = utc_now()
        try:
            seed_everything(seed)
            outcome = evaluate_task(ctx, cell.task, checkpoints[cell.pretrain_epoch], seed,
                                    cross_tasks=cross_tasks(protocol, cell), ratio=cell.ratio)
        except CELL_FAULTS as exc:
            outcome = exc
        except KeyboardInterrupt as exc:
            raise interrupted(exc, "evaluate", cell.key) from exc
        row = record_row(ctx, make_row(ctx, cell, cell_started, outcome, facts, stage="evaluate"))
        written.append(row)
        if row.ok:
            logger.info("%s: %s = %.4f, NormDEL = %.4f", cell.key, row.metric, row.score, row.normdel)
    return written


def run_references(ctx: RunContext, done: set[str]) -> list[ResultRow]:
    """Evaluate each reference encoder (e.g. ImageNet weights) on every task, per seed.

    These rows use no pool data: ``ratio`` and ``normdel`` are null and the report shows them
    apart from the selector table.
    """
    written = []
    for cell in reference_cells(ctx.protocol):
        if cell.key in done:
            continue
        started_at = utc_now()
        try:
            seed_everything(cell.seed)
            checkpoint = Path(cell.reference.checkpoint) if cell.reference.checkpoint else None
            outcome = evaluate_task(ctx, cell.task, checkpoint, cell.seed)
        except CELL_FAULTS as exc:
            outcome = exc
        except KeyboardInterrupt as exc:
            raise interrupted(exc, "evaluate", cell.key) from exc
        written.append(record_row(ctx, make_row(ctx, cell, started_at, outcome, stage="evaluate")))
    return written
