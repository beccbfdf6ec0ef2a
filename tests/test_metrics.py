import math

import numpy as np
import pytest

from delbench.errors import ConfigError
from delbench.reports.stats import mean_interval, mean_std
from delbench.sdk.metrics import confusion_matrix, del_score, dice, mean_iou, normdel


@pytest.mark.parametrize("score, ratio, alpha, expected_del, expected_norm", [
    # by hand: 0.8 · e^-0.05 = 0.8 · 0.951229 = 0.760984; 1 / (1 + e^-0.760984) = 0.681567
    (0.8, 0.05, 1.0, 0.760984, 0.681567),
    # 0.5 · e^-1 = 0.183940; sigmoid = 0.545856
    (0.5, 1.0, 1.0, 0.183940, 0.545856),
    (0.0, 0.2, 1.0, 0.0, 0.5),
    # alpha = 2: 0.7 · e^-0.66 = 0.361796; sigmoid = 0.589475
    (0.7, 0.33, 2.0, 0.361796, 0.589475),
])
def test_normdel_hand_computed(score, ratio, alpha, expected_del, expected_norm):
    assert del_score(score, ratio, alpha) == pytest.approx(expected_del, abs=1e-6)
    assert normdel(score, ratio, alpha) == pytest.approx(expected_norm, abs=1e-6)


def test_normdel_vectorised_and_rewards_compactness():
    values = normdel(np.array([0.8, 0.8, 0.8]), np.array([0.05, 0.2, 1.0]))
    assert values.shape == (3,)
    assert values[0] > values[1] > values[2]


@pytest.mark.parametrize("score, ratio", [(80.0, 0.05), (0.8, 0.0), (0.8, 1.5), (float("nan"), 0.5)])
def test_normdel_rejects_out_of_range(score, ratio):
    with pytest.raises(ConfigError):
        normdel(score, ratio)


def test_miou_and_dice_hand_computed():
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    prediction = np.array([[0, 1, 1, 1], [0, 0, 0, 1]])
    cm = confusion_matrix(prediction, target, 2)
    assert cm.tolist() == [[3, 1], [1, 3]]
    # IoU background = 3 / (3 + 1 + 1) = 0.6, polyp = 3 / 5 = 0.6
    assert mean_iou(cm) == pytest.approx(0.6)
    # Dice polyp = 2·3 / (2·3 + 1 + 1) = 0.75
    assert dice(cm) == pytest.approx(0.75)


def test_miou_skips_absent_class():
    cm = confusion_matrix(np.zeros(4, int), np.zeros(4, int), 2)
    assert mean_iou(cm) == 1.0


def test_mean_std_and_interval():
    mean, std, n = mean_std([0.5, 0.7, float("nan")])
    assert (mean, n) == (pytest.approx(0.6), 2)
    assert std == pytest.approx(math.sqrt(0.02))
    _, low, high, _ = mean_interval([0.5, 0.7])
    assert low < 0.6 < high
    assert all(math.isnan(v) for v in mean_interval([0.5])[1:3])


def test_scene_nn_agreement_counts_nearest_neighbours_of_the_same_scene():
    from delbench.sdk.metrics import scene_nn_agreement
    # two tight pairs in scenes 0 and 1, and a fifth item (scene 0) whose nearest neighbour is
    # item 3 of scene 1 (cosine 0.916, item 2: 0.894, item 1: 0.49): 4 of 5 agree
    embeddings = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.05, 1.0], [0.5, 1.0]])
    scenes = np.array([0, 0, 1, 1, 0])
    assert scene_nn_agreement(embeddings, scenes) == 0.8
    assert scene_nn_agreement(embeddings, scenes, chunk=2) == 0.8  # chunked over the pool
    assert scene_nn_agreement(embeddings, scenes, queries=3, seed=1) in (1 / 3, 2 / 3, 1.0)
