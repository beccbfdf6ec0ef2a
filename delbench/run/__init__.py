"""The run: a protocol's cells (selector × ratio × seed × task) executed into a work directory,
cached by content and resumable.

The work is organised by what can be shared, one module per concern:

- :mod:`~delbench.run.plan`: the cells and their stable keys, grouped by selection;
- :mod:`~delbench.run.context`: what a run's stages share; opening a run (datasets, header);
- :mod:`~delbench.run.embeddings` (stage 1): the pool's embeddings and the scoring backbone,
  cached per (pool, backbone, checkpoint or warm-up);
- :mod:`~delbench.run.select` (stage 2): one selection per (selector, ratio, seed), saved
  under ``subsets/``; the one function every caller runs a selector through;
- :mod:`~delbench.run.pretrain` (stage 3): one pre-training per (subset hash, backbone,
  pre-training spec, seed), cached as checkpoints, resumable;
- :mod:`~delbench.run.evaluate` (stage 4): each task fitted and evaluated, NormDEL;
- :mod:`~delbench.run.rows`: the one place a result row is made and recorded;
- :mod:`~delbench.run.timeouts`: stage timeouts;
- :mod:`~delbench.run.sweep`: every cell in order, fault-isolated (:func:`run_protocol`);
- :mod:`~delbench.run.launch`: the same cells as submitit jobs (local processes, SLURM).

Every cell has a stable key; ``resume`` skips keys already recorded with ``status == "ok"``.
A run holds the work directory's lock (:class:`delbench.store.WorkDirLock`) throughout and
first removes the temporaries that killed runs left behind.
"""
from delbench.run.plan import Cell, plan_cells, planned_cells
from delbench.run.sweep import run_protocol

__all__ = ["Cell", "plan_cells", "planned_cells", "run_protocol"]
