"""The four plugin contracts: Dataset, Selector, Backbone, Task.

Each contract declares every attribute and method that the runner, the command line or a
built-in plugin uses, and what it must return; nothing else is relied on. A plugin, built in
or third-party, imports them from :mod:`delbench.sdk` and subclasses one of them
(``delbench.testing`` checks the behaviour: ``check_dataset``, ``check_selector``,
``check_backbone``, ``check_task``) or provides the same attributes without subclassing.

Parameters. A plugin's parameters are the keyword parameters of its constructor (a
selector's: of ``choose``, or of ``select`` when it implements ``select`` itself). The harness
binds a protocol's parameters against that signature and calls the plugin's classmethod
``check_params(params)`` when the protocol loads, before any work (:mod:`delbench.sdk.params`);
building a plugin calls the same ``check_params`` (``Plugin.__new__``), so each rule is
written once.

Logic here is limited to what every plugin of a kind shares: the parameter check on
construction, trivial defaults (``item_ids`` from ``item_id``, ``load_images`` from
``__getitem__``) and the :class:`Selector` template, which owns the steps every selector
shares so a selector writes only its choice.
"""
from __future__ import annotations

import abc
import inspect
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

import numpy as np

from delbench.errors import ConfigError, SelectionError
from delbench.sdk.derived import DerivedSelection
from delbench.sdk.params import check_plugin_params
from delbench.sdk.subsets import Selection, check_embeddings, checked_indices, subset_size

if TYPE_CHECKING:  # torch is never imported at module level
    import torch


#: ``pretrain.precision`` values: full fp32, or bf16 autocast on CUDA
PRECISIONS = ("fp32", "bf16")


def pretrain_takes(backbone: Any, keyword: str) -> bool:
    """Whether a backbone's (class or instance) ``pretrain`` takes one of the contract's
    optional keywords: ``resume_dir`` (with ``checkpoint_every``) or ``precision``. The
    harness passes those only to a backbone that takes them."""
    return keyword in inspect.signature(backbone.pretrain).parameters


def check_precision(precision: Any, device: Any) -> None:
    """The one rule for ``pretrain.precision``: one of :data:`PRECISIONS`, and ``bf16`` only
    on a CUDA device (autocast elsewhere is not the protocol's mixed precision). Raises
    :class:`~delbench.errors.ConfigError`; the protocol checks it when it loads, a backbone
    again when it trains."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    if precision != "fp32" and not str(device).startswith("cuda"):
        raise ConfigError(f"precision={precision!r} needs a CUDA backbone (device 'cuda'), not {str(device)!r}; "
                          f"on CPU use 'fp32'")


class Plugin:
    """What every plugin kind has: a registry key written once, a version and a description.

    Building a plugin checks its keyword arguments with :meth:`check_params` before
    ``__init__`` runs (``Plugin.__new__``), so the rules a protocol was checked with when it
    loaded hold for a plugin built in a notebook too, and each rule is written once.
    """

    #: the registry key (``delbench list`` shows it; protocols name the plugin by it)
    name: ClassVar[str]
    #: bumped whenever the plugin's results may change; recorded in every result row
    version: ClassVar[str] = "1"
    #: one line for ``delbench list``
    description: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Plugin":
        try:
            cls.check_params(kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{getattr(cls, 'name', cls.__name__)}: {exc}") from None
        return super().__new__(cls)

    @classmethod
    def parameter_method(cls) -> str:
        """The method whose keyword parameters are the plugin's parameters: the constructor."""
        return "__init__"

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Raise :class:`delbench.errors.ConfigError` naming the key for an unusable value.

        ``params`` holds the keyword arguments given (defaults are not filled in; a rule
        relating two parameters reads the other's default from a constant both use), plus
        what the harness passes (a dataset's ``split``). Called when a protocol loads, by
        ``delbench select``, by ``Selector.select`` and whenever the plugin is built.
        """


class Dataset(Plugin, abc.ABC):
    """A pool or downstream dataset that loads items lazily, one index at a time.

    Constructed by the harness as ``cls(split=..., **params)``, plus ``image_size=`` (the
    backbone's) when the protocol's backbone sets ``image_size`` and the dataset's params do
    not. Constructing one has no side effects (no file is written; see :meth:`split_record`)
    and never loads every item into memory.

    ``__getitem__(i)`` returns a dict with ``image`` (uint8, H×W×3, resized to
    ``image_size`` when that is set), ``id`` (the stable string :meth:`item_id` returns),
    ``mask`` (uint8 H×W, values {0, 1}, or 0 … ``num_classes`` − 1 when ``class_names`` names
    more than two classes) on ``segmentation`` datasets and ``label`` (int) on
    ``classification`` ones.
    """

    #: what the dataset can feed: "pool" (pre-training, selectors) and/or the ``dataset_role``
    #: of a task ("segmentation", "classification"); a protocol pairing a task with a dataset
    #: without its role is refused when it loads
    roles: ClassVar[tuple[str, ...]] = ("pool",)
    #: the splits it can be built with ("all" for a pool; tasks use their train/test splits)
    splits: ClassVar[tuple[str, ...]] = ("all",)
    #: class names of a segmentation or classification dataset: label (or mask value) i is
    #: ``class_names[i]``; empty when unknown
    class_names: tuple[str, ...] = ()

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item ``index`` (0 ≤ index < len); ``IndexError`` outside that range."""

    def item_id(self, index: int) -> str:
        """The stable id of item ``index`` (e.g. its path relative to the root): the same
        images have the same ids on every machine, so a subset means the same images
        everywhere. Ids are unique within a dataset and hold no newline."""
        return str(self[index]["id"])

    def item_ids(self) -> list[str]:
        """Every item's id in index order (what subset ids are computed from); override it
        when ids are known without reading items."""
        return [self.item_id(index) for index in range(len(self))]

    @property
    def num_classes(self) -> int:
        """How many classes the labels or masks use (``len(class_names)``)."""
        return len(self.class_names)

    def labels(self) -> np.ndarray:
        """Class index per item (int64), −1 where an item has no ``label``; override it when
        labels are known without reading the images."""
        return np.asarray([int(self[index].get("label", -1)) for index in range(len(self))], dtype=np.int64)

    def metadata(self) -> Mapping[str, np.ndarray]:
        """Per-item columns, each an array of length ``len(self)`` (e.g. ``sequence_id``,
        ``source``; on the synthetic pool the planted ``kind``); empty when unknown."""
        return {}

    def load_images(self, indices: np.ndarray) -> np.ndarray:
        """Stack the images of ``indices`` into one uint8 array (B, H, W, 3)."""
        return np.stack([self[int(i)]["image"] for i in indices])

    def split_record(self) -> Mapping[str, Any] | None:
        """The train/test split this dataset was built with, as a JSON-able record, or None.

        Building a dataset writes nothing; the harness keeps this record as a split file
        (``delbench.store.write_split_file``: keys ``dataset`` and ``sha256`` name the file).
        None for datasets whose splits are fixed by their parameters (the synthetic ones).
        """
        return None


class Selector(Plugin, abc.ABC):
    """Chooses which items of a pool to pre-train on.

    The contract of ``select(pool, ratio, *, seed, embeddings=None, **params)``: sorted,
    unique, in-range int64 indices, exactly ``delbench.sdk.subset_size(len(pool), ratio)``
    of them, deterministic for a given seed, as a bare array or a :class:`Selection` with
    diagnostics (e.g. the threshold used); nothing is trained. Constructed with no
    arguments. ``embeddings`` (n × d float, row i for pool item i, possibly a read-only
    float16 memory map) are passed when ``requires_embeddings`` is true; a ``backbone``
    keyword (a :class:`Backbone`) when ``requires_backbone`` is true.

    **Generative selectors** (``produces_derived = True``, e.g. OptiDEL) return new images
    instead of indices: ``select`` then also receives ``output_dir``, an empty directory the
    harness owns, writes each image there with ``delbench.sdk.write_derived_image``
    (content-addressed ``<sha256>.png`` with its provenance: source indices, ids and boxes) and
    returns a ``delbench.sdk.DerivedSelection`` of exactly ``subset_size(len(pool), ratio)``
    images (the budget counts images trained on). The harness checks them, writes the
    manifest and moves the directory to ``<its own output directory>/<manifest sha256>``
    (``delbench.run.select.run_selector``: ``<work_dir>/derived/`` in a run, ``--out`` of
    ``delbench select``); pre-training then reads the images, not the pool.
    Everything but the files is as for index selectors: deterministic per seed, nothing
    trained.

    This class is also a template: its :meth:`select` does every step selectors share and a
    subclass writes only :meth:`choose`. A selector may instead implement ``select`` itself,
    subclassing this class (for its attributes and defaults) or not (duck-typed);
    ``delbench.run.select.run_selector`` runs every kind alike. A subclass that writes neither
    cannot be built.
    """

    #: the selector reads pool embeddings (``embeddings=``)
    requires_embeddings: ClassVar[bool] = False
    #: the selector reads the current encoder (``backbone=``; e.g. its reconstruction loss)
    requires_backbone: ClassVar[bool] = False
    #: set when the method only makes sense at one ratio (``full`` → 1.0)
    fixed_ratio: ClassVar[float | None] = None
    #: set when the output does not depend on the seed (``full``, ``oracle``, pure filters);
    #: the contract checker then skips its seed-sensitivity check
    deterministic_in_seed: ClassVar[bool] = False
    #: the selector writes new images (``output_dir=``) and returns a ``DerivedSelection``
    produces_derived: ClassVar[bool] = False
    #: the selector can keep intermediate results in files and split its work over processes
    #: when the harness gives it ``work=`` (a ``delbench.sdk.SelectionWork``): the same
    #: result as without, resumed after a kill. Optional for the harness to give.
    resumable_work: ClassVar[bool] = False

    def __new__(cls, *args: Any, **kwargs: Any) -> "Selector":
        if cls.select is Selector.select and cls.choose is Selector.choose:
            raise TypeError(f"Can't instantiate selector {cls.__name__}: it implements neither choose (the "
                            f"template's one step) nor select")
        return super().__new__(cls, *args, **kwargs)

    @classmethod
    def parameter_method(cls) -> str:
        """``choose`` for a selector that uses the template's :meth:`select`, else ``select``."""
        return "choose" if cls.select is Selector.select else "select"

    def select(self, pool: Dataset, ratio: float, *, seed: int, embeddings: np.ndarray | None = None,
               backbone: Backbone | None = None, output_dir: Any = None, work: Any = None,
               **params: Any) -> Selection | DerivedSelection:
        """The shared steps around :meth:`choose`, in order: ratio → ``k = subset_size(n,
        ratio)`` (a ``fixed_ratio`` selector refuses any other ratio); ``params`` bound against
        ``choose``'s signature and value-checked (``check_params``); ``embeddings`` checked
        when ``requires_embeddings`` (``check_embeddings``) and a ``backbone`` required when
        ``requires_backbone``; an empty pool returns an empty subset without calling
        ``choose``; the chosen indices are sorted and checked (exactly ``k``, unique, in
        range) and ``diagnostics['time_s']`` records the seconds it all took.

        A ``produces_derived`` selector's ``choose`` also receives ``output_dir`` (required)
        and returns a ``DerivedSelection``; the template checks it holds exactly ``k`` images
        (``run_selector`` checks the files). A ``resumable_work`` selector's ``choose``
        receives ``work`` when the caller gives one (and must return what it returns
        without).
        """
        started = time.perf_counter()
        n = len(pool)
        k = subset_size(n, ratio)
        if self.fixed_ratio is not None and float(ratio) != float(self.fixed_ratio):
            raise SelectionError(f"{self.name} only runs at ratio {self.fixed_ratio}, got {ratio!r}")
        check_plugin_params("selector", type(self), params, self.name)
        inputs: dict[str, Any] = {}
        if self.requires_embeddings:
            inputs["embeddings"] = check_embeddings(embeddings, n)
        if self.requires_backbone:
            if backbone is None:
                raise SelectionError(f"{self.name} needs the current backbone (keyword 'backbone=')")
            inputs["backbone"] = backbone
        if work is not None:
            if not self.resumable_work:
                raise SelectionError(f"{self.name} keeps no work files: it takes no work= (drop --work)")
            inputs["work"] = work
        if self.produces_derived:
            if output_dir is None:
                raise SelectionError(f"{self.name} writes new images: pass output_dir= (an empty directory)")
            result = self.choose(pool, k, seed=seed, output_dir=output_dir, **inputs, **params) if k \
                else DerivedSelection([])
            if not isinstance(result, DerivedSelection) or len(result.images) != k:
                raise SelectionError(f"{self.name}: choose must return a DerivedSelection of {k} images")
            result.diagnostics["time_s"] = round(time.perf_counter() - started, 4)
            return result
        diagnostics: dict[str, Any] = {}
        indices = np.zeros(0, np.int64)
        if k:
            chosen = self.choose(pool, k, seed=seed, **inputs, **params)
            indices, diagnostics = chosen if isinstance(chosen, tuple) else (chosen, {})
            indices = np.sort(np.asarray(indices, dtype=np.int64))
        indices, _ = checked_indices(indices, n, k, selector=self.name)
        return Selection(indices, {**diagnostics, "time_s": round(time.perf_counter() - started, 4)})

    def choose(self, pool: Dataset, k: int, *, seed: int, **params: Any) -> Any:
        """The ``k`` (≥ 1) items to keep, as indices in any order, or ``(indices,
        diagnostics)``.

        Declare the selector's parameters as keyword parameters with defaults (they are its
        parameters: protocols are checked against them), plus ``embeddings`` when
        ``requires_embeddings`` (checked: 2-D float, one finite row per item), ``backbone``
        when ``requires_backbone``, ``output_dir`` when ``produces_derived`` (then return a
        ``DerivedSelection`` of ``k`` images) and ``work=None`` when ``resumable_work``.
        Values were checked by ``check_params`` already.
        """
        raise NotImplementedError(f"{type(self).__name__} implements select, not choose")


class Backbone(Plugin, abc.ABC):
    """An image encoder with a self-supervised pre-training objective.

    Constructed as ``cls(**params)``; when ``params`` include ``image_size``, the harness
    loads every dataset at that size (square). Images cross this interface as uint8 arrays
    (B, H, W, 3); the backbone normalises them (:meth:`preprocess`). The tasks' heads read
    :meth:`patch_tokens` on a ``grid_size`` grid of ``embed_dim`` wide tokens and train or
    freeze :attr:`encoder`.
    """

    @classmethod
    def check_optimizer(cls, optimizer: Mapping[str, Any]) -> None:
        """Raise :class:`delbench.errors.ConfigError` naming the key for an unusable
        ``pretrain.optimizer`` (the dict :meth:`pretrain` receives); called when the protocol
        loads. The default accepts any dict."""

    @property
    @abc.abstractmethod
    def embed_dim(self) -> int:
        """Width D of the patch tokens (heads are built with this input size)."""

    @property
    @abc.abstractmethod
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, columns) of :meth:`patch_tokens`: N = rows × columns tokens."""

    @property
    @abc.abstractmethod
    def encoder(self) -> "torch.nn.Module":
        """The torch module whose parameters produce the patch tokens: tasks freeze or
        fine-tune it, switch it between train and eval mode, and put their heads on the
        device of its parameters."""

    @abc.abstractmethod
    def preprocess(self, images: np.ndarray) -> "torch.Tensor":
        """uint8 (B, H, W, 3) → normalised float tensor (B, 3, H, W) on the encoder's device."""

    @abc.abstractmethod
    def patch_tokens(self, images: "torch.Tensor") -> "torch.Tensor":
        """Encoder patch tokens (B, N, D) of preprocessed images (no class or register
        tokens), differentiable."""

    @abc.abstractmethod
    def embed(self, images: np.ndarray) -> np.ndarray:
        """One float32 feature vector per uint8 image, shape (B, D'): what selectors see."""

    @abc.abstractmethod
    def reconstruction_loss(self, images: np.ndarray, *, seed: int) -> np.ndarray:
        """Per-image self-supervised loss, float32 (B,), finite; deterministic for a seed
        (it fixes the random masks). A difficulty score for ``mae_loss`` and ``optidel``."""

    def fingerprint(self) -> str | None:
        """Optional: a digest of every weight :meth:`reconstruction_loss` depends on, so
        selectors can cache scores per model on disk (``optidel`` does); None (the default)
        means "do not cache"."""
        return None

    @abc.abstractmethod
    def pretrain(self, pool: Dataset, indices: np.ndarray, *, steps: int, batch_size: int,
                 seed: int, optimizer: Mapping[str, Any], progress: bool = False,
                 on_step: Callable[[int, float], None] | None = None,
                 resume_dir: str | None = None, checkpoint_every: int = 0) -> dict[str, Any]:
        """Run ``steps`` optimizer steps on ``pool[indices]``; return JSON-able stats with
        ``loss`` (the per-step losses).

        ``optimizer`` is the protocol's ``pretrain.optimizer`` dict (``lr``, ``weight_decay``,
        ``warmup_steps``, …). ``on_step(step, loss)`` is called after every optimizer step
        (1-based); the runner saves intermediate checkpoints from it.

        Resumable pre-training (optional; the runner passes these two only to an
        implementation whose signature has ``resume_dir``): save the whole training state
        to ``resume_dir`` after every ``checkpoint_every``-th step, and when a state of the
        same run is found there, continue from it, ending as an uninterrupted run would
        (``delbench.sdk.TrainingState`` and its helpers write and read such states; ``timm_mae`` is the
        example). Stats may then add ``resumed_from_step``. Without them a killed
        pre-training restarts from step 0.

        Mixed precision (optional; passed only to an implementation whose signature has
        ``precision``): the protocol's ``pretrain.precision``, one of :data:`PRECISIONS`, as
        :func:`check_precision` allows it. A backbone without it trains in fp32, and a
        protocol asking it for another precision is refused when it loads.
        """

    @abc.abstractmethod
    def save(self, path: str) -> None:
        """Write the weights to ``path`` (safetensors), atomically."""

    @abc.abstractmethod
    def load(self, path: str) -> None:
        """Load weights written by :meth:`save` (a resumed run, an embedding checkpoint, a
        reference encoder); torch files only with ``weights_only=True``."""


class Task(Plugin, abc.ABC):
    """A downstream task: fits a head (and optionally the encoder), then evaluates.

    Constructed as ``cls(**params)``. Metrics are fractions in [0, 1]; ``metric`` names the
    one NormDEL and the report's ranking use. The head belongs to the task: :meth:`fit` must
    not change the backbone the caller evaluates other tasks with, except through
    ``backbone.encoder`` when the task fine-tunes it (the runner builds a fresh backbone per
    task cell).
    """

    #: the metric :meth:`evaluate` must report, used for NormDEL and the report's ranking
    metric: ClassVar[str]
    #: whether a larger ``metric`` is better (the report orders selectors by it)
    higher_is_better: ClassVar[bool] = True
    #: the dataset role this task consumes ("segmentation", "classification"): a protocol
    #: giving it a dataset without that role is refused when it loads
    dataset_role: ClassVar[str] = "segmentation"

    @abc.abstractmethod
    def fit(self, backbone: Backbone, train: Dataset, *, seed: int) -> dict[str, Any]:
        """Train the head on ``train``; return JSON-able fit statistics (e.g. losses)."""

    @abc.abstractmethod
    def evaluate(self, backbone: Backbone, test: Dataset) -> dict[str, float]:
        """Metrics of the fitted head on ``test``: name → fraction, ``metric`` included."""
