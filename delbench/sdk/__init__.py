"""delbench's plugin SDK: everything a plugin may use, and the one module it imports.

A plugin, built in or third-party, writes ``from delbench.sdk import Selector, hookimpl, …``
and imports nothing else of delbench (as a pytest plugin imports ``pytest``, never
``_pytest``). What is here, by concept:

- the hook marker and specifications: :data:`hookimpl` (:mod:`delbench.sdk.hookspecs`);
- the four contracts: :class:`Dataset`, :class:`Selector`, :class:`Backbone`, :class:`Task`
  (:mod:`delbench.sdk.contracts`), with the optional-keyword rules of ``pretrain``;
- errors a plugin raises (:mod:`delbench.errors`);
- parameter checks for ``check_params`` (:mod:`delbench.sdk.params`);
- subsets: the size rule and identities, what a selector returns
  (:mod:`delbench.sdk.subsets`), the helpers selectors share (:mod:`delbench.sdk.selection`)
  and a generative selector's derived images (:mod:`delbench.sdk.derived`);
- images and metrics: reading and checking image files (:mod:`delbench.sdk.imaging`),
  segmentation metrics and NormDEL (:mod:`delbench.sdk.metrics`);
- what training and long selections need: safe file writes and the cache folder
  (:mod:`delbench.sdk.files`), data-parallel processes (:mod:`delbench.sdk.distributed`),
  resumable training states (:mod:`delbench.sdk.training_state`) and resumable sharded work
  (:mod:`delbench.sdk.shards`).

Nothing here imports the runner, the store, reports, submissions or the protocol loader, and
nothing imports torch when imported.
"""
from delbench.errors import ConfigError, DatasetError, DelbenchError, SelectionError, WriteError, one_line
from delbench.sdk.contracts import (PRECISIONS, Backbone, Dataset, Plugin, Selector, Task, check_precision,
                                    pretrain_takes)
from delbench.sdk.derived import (DerivedImage, DerivedSelection, DerivedSource, pixel_sha256, read_png,
                                  write_derived_image)
from delbench.sdk.distributed import World, device_for, process_group, sample_generator, sample_noise, world_from_env
from delbench.sdk.files import (atomic_path, atomic_save_npy, atomic_write_json, atomic_write_text, cache_base, dumps,
                                file_lock, file_sha256)
from delbench.sdk.hookspecs import hookimpl
from delbench.sdk.imaging import (IMAGE_SUFFIXES, item_decode_problems, mask_content_problems, mask_value_problem,
                                  read_image, read_mask)
from delbench.sdk.metrics import confusion_matrix, del_score, dice, iou_per_class, mean_iou, normdel
from delbench.sdk.params import (check_bool, check_choice, check_int, check_known_keys, check_number, check_path,
                                 check_split, check_subset, is_int, is_number)
from delbench.sdk.selection import check_positive_int, largest_remainder, lowest_first
from delbench.sdk.shards import SelectionWork, ShardFiles, array_digest, embeddings_fingerprint, run_shards
from delbench.sdk.subsets import (Selection, check_embeddings, ids_sha256, selected_ids_sha256, subset_sha256,
                                  subset_size)
from delbench.sdk.training_state import (TrainingState, indices_digest, load_optimizer, load_state, optimizer_tensors,
                                         save_state)

__all__ = [
    # hooks and contracts
    "hookimpl", "Plugin", "Dataset", "Selector", "Backbone", "Task", "PRECISIONS", "check_precision",
    "pretrain_takes",
    # errors
    "DelbenchError", "ConfigError", "DatasetError", "SelectionError", "WriteError", "one_line",
    # parameter checks
    "check_bool", "check_choice", "check_int", "check_known_keys", "check_number", "check_path", "check_split",
    "check_subset", "is_int", "is_number",
    # subsets and selection helpers
    "Selection", "subset_size", "subset_sha256", "ids_sha256", "selected_ids_sha256", "check_embeddings",
    "lowest_first", "largest_remainder", "check_positive_int",
    "DerivedSelection", "DerivedImage", "DerivedSource", "write_derived_image", "pixel_sha256", "read_png",
    # images and metrics
    "IMAGE_SUFFIXES", "read_image", "read_mask", "item_decode_problems", "mask_content_problems",
    "mask_value_problem", "confusion_matrix", "iou_per_class", "mean_iou", "dice", "del_score", "normdel",
    # files, processes, training states, sharded work
    "atomic_path", "atomic_write_text", "atomic_write_json", "atomic_save_npy", "dumps", "file_sha256", "file_lock",
    "cache_base", "World", "world_from_env", "device_for", "process_group", "sample_generator", "sample_noise",
    "TrainingState", "indices_digest", "optimizer_tensors", "load_optimizer", "save_state", "load_state",
    "SelectionWork", "ShardFiles", "run_shards", "array_digest", "embeddings_fingerprint",
]
