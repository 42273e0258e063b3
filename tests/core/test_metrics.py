import numpy as np
import pytest

from napari_unet.core import MetricAccumulator, UserInputError, roc_auc


def test_binary_metrics_on_a_hand_computed_case():
    truth = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    pred = np.array([[1, 0, 1, 0], [1, 0, 0, 0]])
    # tp=2, fp=1, fn=1, tn=4
    m = MetricAccumulator(2).add(pred, truth)["1"]
    assert m["dice"] == pytest.approx(4 / 6)
    assert m["iou"] == pytest.approx(2 / 4)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["accuracy"] == pytest.approx(6 / 8)


def test_mask_restricts_the_pixels_counted():
    truth = np.array([1, 0, 1, 0])
    pred = np.array([1, 1, 0, 0])
    mask = np.array([True, False, True, True])
    m = MetricAccumulator(2).add(pred, truth, mask=mask)["1"]
    assert (m["precision"], m["sensitivity"], m["accuracy"]) == (1.0, 0.5, pytest.approx(2 / 3))


def test_pooling_adds_counts_not_averages():
    acc = MetricAccumulator(2)
    acc.add(np.array([1, 1]), np.array([1, 1]))
    acc.add(np.array([0, 0, 0, 1]), np.array([1, 1, 1, 1]))
    assert acc.pooled()["1"]["sensitivity"] == pytest.approx(3 / 6)


def test_auc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300) / 4  # many ties
    truth = rng.random(300) < 0.3
    pos, neg = scores[truth], scores[~truth]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        pos.size * neg.size
    )
    assert roc_auc(scores, truth) == pytest.approx(brute)
    assert np.isnan(roc_auc(scores, np.zeros(300, bool)))


def test_multiclass_reports_each_class():
    truth = np.array([0, 1, 2, 2])
    pred = np.array([0, 1, 2, 1])
    report = MetricAccumulator(3).add(pred, truth)
    assert report["1"]["precision"] == 0.5 and report["2"]["sensitivity"] == 0.5
    with pytest.raises(UserInputError, match="below 3"):
        MetricAccumulator(3).add(np.array([3]), np.array([0]))
