"""The task contract checker (:class:`delbench.sdk.Task`).

::

    from delbench.testing import check_task
    check_task(MyTask, params={"epochs": 1})

The task is built as ``cls(**params)`` and fitted on a :class:`~delbench.testing.fixtures.TinyBackbone`
(or ``backbone_factory()``, a fresh backbone per call) with small in-memory train and test
sets for its ``dataset_role``: noisy images with a bright disc and its mask for
"segmentation", three colour classes for "classification"; other roles pass their own
``train``/``test``. The checks: ``check_attributes`` (``name``, ``metric`` a string,
``higher_is_better`` a bool, ``dataset_role`` a string); ``check_fit_and_evaluate`` (``fit``
returns JSON-able stats; ``evaluate`` returns finite fractions in [0, 1] including
``metric``); ``check_deterministic`` (a second task fitted with the same seed on a fresh
backbone reports the same metrics).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterator, Mapping

from delbench.testing.checks import named_check
from delbench.testing.fixtures import TinyBackbone, make_classification_set, make_segmentation_set

DATASETS_BY_ROLE: Mapping[str, Callable[..., Any]] = {
    "segmentation": make_segmentation_set,
    "classification": make_classification_set,
}


class _TaskHarness:
    def __init__(self, task_cls: Any, params: Mapping[str, Any] | None, backbone_factory: Callable[[], Any] | None,
                 train: Any, test: Any) -> None:
        self.cls = task_cls
        self.name = getattr(task_cls, "name", getattr(task_cls, "__name__", repr(task_cls)))
        self.params = dict(params or {})
        self.backbone_factory = backbone_factory or TinyBackbone
        self._train, self._test = train, test

    @functools.cached_property
    def datasets(self) -> tuple[Any, Any]:
        if self._train is not None and self._test is not None:
            return self._train, self._test
        role = getattr(self.cls, "dataset_role", None)
        if role not in DATASETS_BY_ROLE:
            raise AssertionError(f"no built-in test data for dataset_role {role!r}: pass train= and test=")
        return DATASETS_BY_ROLE[role](seed=0), DATASETS_BY_ROLE[role](seed=1)

    def fit_and_evaluate(self) -> tuple[Any, dict[str, Any], dict[str, float]]:
        train, test = self.datasets
        task, backbone = self.cls(**self.params), self.backbone_factory()
        stats = task.fit(backbone, train, seed=0)
        return task, stats, task.evaluate(backbone, test)

    @functools.cached_property
    def first(self) -> tuple[Any, dict[str, Any], dict[str, float]]:
        return self.fit_and_evaluate()


def check_attributes(h: _TaskHarness) -> None:
    assert isinstance(h.name, str) and h.name, "the class needs a non-empty string attribute 'name'"
    assert isinstance(getattr(h.cls, "metric", None), str), "the class needs a string attribute 'metric'"
    assert isinstance(getattr(h.cls, "higher_is_better", True), bool), "'higher_is_better' must be a bool"
    assert isinstance(getattr(h.cls, "dataset_role", None), str), "the class needs a string attribute 'dataset_role'"


def check_fit_and_evaluate(h: _TaskHarness) -> None:
    from delbench.sdk.files import dumps

    task, stats, metrics = h.first
    assert isinstance(stats, dict), f"fit must return a dict of statistics, got {type(stats).__name__}"
    dumps(stats)  # JSON-able (numpy values allowed)
    assert isinstance(metrics, dict) and task.metric in metrics, (
        f"evaluate must return a dict holding the metric {task.metric!r}, got {metrics!r}")
    for key, value in metrics.items():
        assert isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0, (
            f"metric {key!r} must be a float in [0, 1], got {value!r}")


def check_deterministic(h: _TaskHarness) -> None:
    _, _, first = h.first
    _, _, second = h.fit_and_evaluate()
    assert first == second, f"two fits with seed 0 on fresh backbones differ: {first} vs {second}"


CHECKS: tuple[Callable[[_TaskHarness], None], ...] = (check_attributes, check_fit_and_evaluate, check_deterministic)


def task_checks(task_cls: Any, *, params: Mapping[str, Any] | None = None,
                backbone_factory: Callable[[], Any] | None = None, train: Any = None,
                test: Any = None) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(check_name, check)`` pairs; nothing is fitted until a check runs."""
    harness = _TaskHarness(task_cls, params, backbone_factory, train, test)
    for check in CHECKS:
        yield check.__name__, named_check(check, harness, f"task {harness.name!r}")


def check_task(task_cls: Any, *, params: Mapping[str, Any] | None = None,
               backbone_factory: Callable[[], Any] | None = None, train: Any = None, test: Any = None) -> None:
    """Run every task check; raise AssertionError naming the first that fails."""
    for _, check in task_checks(task_cls, params=params, backbone_factory=backbone_factory, train=train, test=test):
        check()
