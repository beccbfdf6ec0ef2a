"""Planning: a protocol's cells (selector × ratio × seed × task, checkpoint epochs, reference
encoders), each a small immutable description with a stable key, and their grouping by the
selection they share (the unit of work of the sweep and of a launched job)."""
from __future__ import annotations

from dataclasses import dataclass

from delbench.protocol import Protocol, ReferenceSpec, SelectorSpec, TaskSpec
from delbench.sdk.subsets import subset_size


@dataclass(frozen=True)
class Cell:
    """One result row: a selection (selector, ratio, seed) evaluated on one task, or a
    reference encoder (``reference``; no selector, no ratio) on one task."""

    selector: SelectorSpec | None
    ratio: float | None
    seed: int
    task: TaskSpec
    pretrain_epoch: float | None = None  # None = the end of pre-training
    reference: ReferenceSpec | None = None

    @property
    def label(self) -> str:
        """What the report calls the row's selection: the selector label or ``reference:<label>``."""
        return f"reference:{self.reference.label}" if self.reference else self.selector.label

    @property
    def key(self) -> str:
        if self.reference:
            return f"{self.label}|seed={self.seed}|{self.task.label}"
        epoch = "" if self.pretrain_epoch is None else f"|epoch={self.pretrain_epoch:g}"
        return f"{self.label}|ratio={self.ratio:g}|seed={self.seed}|{self.task.label}{epoch}"


def plan_cells(protocol: Protocol) -> list[Cell]:
    """All final-checkpoint cells of a protocol, in a deterministic order."""
    return [Cell(selector, ratio, seed, task)
            for selector in protocol.selectors
            for ratio in protocol.selector_ratios(selector)
            for seed in protocol.selector_seeds(selector)
            for task in protocol.tasks]


def planned_cells(protocol: Protocol, n_pool: int) -> list[Cell]:
    """Every cell a complete run of ``protocol`` on a pool of ``n_pool`` items records: each
    cell of :func:`plan_cells`, then each of its checkpoint epochs that its subset's schedule
    reaches, and every reference encoder on every task and seed. ``delbench verify`` checks
    a run's rows against these keys."""
    cells = []
    for cell in plan_cells(protocol):
        cells.append(cell)
        n_selected = subset_size(n_pool, cell.ratio)
        cells += [Cell(cell.selector, cell.ratio, cell.seed, cell.task, epoch)
                  for epoch in protocol.pretrain.checkpoint_epochs
                  if protocol.pretrain.reaches(epoch, n_pool, n_selected)]
    cells += [Cell(None, None, seed, task, reference=reference)
              for reference in protocol.references for seed in protocol.seeds for task in protocol.tasks]
    return cells


def plan_groups(protocol: Protocol) -> list[list[Cell]]:
    """The cells grouped by what they share, a selection (selector, ratio, seed), in plan
    order: the unit of work of the sweep and of a launched job."""
    groups: dict[tuple[str, float, int], list[Cell]] = {}
    for cell in plan_cells(protocol):
        groups.setdefault((cell.label, cell.ratio, cell.seed), []).append(cell)
    return list(groups.values())


def group_cells(protocol: Protocol, cells: list[Cell]) -> list[Cell]:
    """A selection group's rows in the order they are written: each task at the end of
    pre-training and at each ``checkpoint_epochs`` entry."""
    epochs = [None, *protocol.pretrain.checkpoint_epochs]
    return [Cell(cell.selector, cell.ratio, cell.seed, cell.task, e) for cell in cells for e in epochs]


def reference_cells(protocol: Protocol) -> list[Cell]:
    """The reference encoders' cells, in the order they are run."""
    return [Cell(None, None, seed, task, reference=reference) for reference in protocol.references
            for seed in protocol.seeds for task in protocol.tasks]
