"""Public contract checkers for every plugin kind, in the spirit of scikit-learn's
``check_estimator`` and timm's tests over ``list_models()``.

A third-party author runs them in their own test suite::

    from delbench.testing import check_backbone, check_dataset, check_selector, check_task

    def test_my_selector():
        check_selector(MySelector)

or parametrises over the individual checks, so each shows up as its own test::

    @pytest.mark.parametrize("check_name, check", selector_checks(MySelector))
    def test_contract(check_name, check):
        check()

Each ``check_<kind>`` runs every check of one contract of :mod:`delbench.sdk.contracts` and
raises ``AssertionError`` naming the first that fails (``"<check> failed for selector
'name': …"``); ``<kind>_checks`` yields them one by one. What each checks, and what it
feeds the plugin, is in its module: :mod:`delbench.testing.selectors`,
:mod:`~delbench.testing.datasets`, :mod:`~delbench.testing.backbones`,
:mod:`~delbench.testing.tasks`. The fixtures (:mod:`delbench.testing.fixtures`: in-memory
datasets, a tiny trainable backbone) are built from numpy and torch; no built-in plugin is
imported until a default selector pool is rendered.
"""
from delbench.testing.backbones import backbone_checks, check_backbone
from delbench.testing.datasets import check_dataset, dataset_checks
from delbench.testing.fixtures import (FakeBackbone, InMemoryDataset, PoolView, TinyBackbone, clustered_embeddings,
                                       make_classification_set, make_contract_pool, make_segmentation_set)
from delbench.testing.selectors import check_selector, selector_checks
from delbench.testing.tasks import check_task, task_checks

__all__ = [
    "FakeBackbone", "InMemoryDataset", "PoolView", "TinyBackbone", "backbone_checks", "check_backbone",
    "check_dataset", "check_selector", "check_task", "clustered_embeddings", "dataset_checks",
    "make_classification_set", "make_contract_pool", "make_segmentation_set", "selector_checks", "task_checks",
]
