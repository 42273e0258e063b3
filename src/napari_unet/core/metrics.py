"""Pixel metrics for semantic segmentation, per class, optionally inside a mask.

:class:`MetricAccumulator` pools counts over many images (as DRIVE results are reported:
pooled over images, inside the field of view), and computes ROC AUC exactly from the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import UserInputError

METRIC_NAMES = ("dice", "iou", "precision", "sensitivity", "specificity", "accuracy", "auc")


def _safe_div(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Exact area under the ROC curve (ties count one half), via the rank-sum statistic."""
    scores = np.asarray(scores, np.float64).ravel()
    truth = np.asarray(truth, bool).ravel()
    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average ranks over runs of equal scores.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg_rank = first + (counts + 1) / 2.0
    ranks = np.empty(scores.size, np.float64)
    ranks[order] = np.repeat(avg_rank, counts)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def counts_to_metrics(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dice, IoU, precision, sensitivity, specificity and accuracy from a confusion matrix."""
    return {
        "dice": _safe_div(2 * tp, 2 * tp + fp + fn),
        "iou": _safe_div(tp, tp + fp + fn),
        "precision": _safe_div(tp, tp + fp),
        "sensitivity": _safe_div(tp, tp + fn),
        "specificity": _safe_div(tn, tn + fp),
        "accuracy": _safe_div(tp + tn, tp + fp + fn + tn),
    }


@dataclass
class MetricAccumulator:
    """Pools per-class confusion counts (and scores for AUC) over images.

    ``num_classes`` counts background: 2 for a binary task. Classes 1..K-1 are reported.
    """

    num_classes: int = 2
    counts: np.ndarray = field(init=False)
    _scores: list[np.ndarray] = field(default_factory=list, init=False)
    _truth: list[np.ndarray] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.counts = np.zeros((self.num_classes, 4), np.int64)  # tp, fp, fn, tn per class

    def add(
        self,
        pred: np.ndarray,
        truth: np.ndarray,
        *,
        scores: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> dict[str, dict[str, float]]:
        """Add one image and return its own metrics.

        pred, truth : integer class maps of the same shape; truth values < 0 are not counted.
        scores : foreground probability (binary tasks only), for ROC AUC.
        mask : boolean; only pixels where it is true are counted (e.g. a field of view).
        """
        pred = np.asarray(pred)
        truth = np.asarray(truth)
        if pred.shape != truth.shape:
            raise UserInputError(
                f"prediction shape {pred.shape} differs from ground truth shape {truth.shape}"
            )
        valid = truth >= 0
        if mask is not None:
            if mask.shape != truth.shape:
                raise UserInputError(
                    f"mask shape {mask.shape} differs from ground truth shape {truth.shape}"
                )
            valid &= mask.astype(bool)
        p, t = pred[valid].astype(np.int64), truth[valid].astype(np.int64)
        if p.size and (p.max() >= self.num_classes or t.max() >= self.num_classes):
            raise UserInputError(
                f"class values must be below {self.num_classes}; found {max(p.max(), t.max())}"
            )
        image_counts = np.zeros_like(self.counts)
        for c in range(1, self.num_classes):
            pc, tc = p == c, t == c
            tp = int(np.count_nonzero(pc & tc))
            fp = int(np.count_nonzero(pc)) - tp
            fn = int(np.count_nonzero(tc)) - tp
            image_counts[c] = (tp, fp, fn, p.size - tp - fp - fn)
        self.counts += image_counts
        auc = float("nan")
        if scores is not None:
            s = np.asarray(scores)[valid]
            self._scores.append(s.astype(np.float32))
            self._truth.append(t == 1)
            auc = roc_auc(s, t == 1)
        return self._report(image_counts, auc)

    def _report(self, counts: np.ndarray, auc: float) -> dict[str, dict[str, float]]:
        report = {}
        for c in range(1, self.num_classes):
            row = counts_to_metrics(*(int(v) for v in counts[c]))
            if self.num_classes == 2:
                row["auc"] = auc
            report[str(c)] = row
        return report

    def merge(self, other: MetricAccumulator) -> None:
        """Add everything ``other`` has pooled (e.g. the folds of a cross-validation)."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge accumulators with different numbers of classes")
        self.counts += other.counts
        self._scores += other._scores
        self._truth += other._truth

    def pooled(self) -> dict[str, dict[str, float]]:
        """Metrics over everything added, per class (keys "1", "2", ...)."""
        auc = float("nan")
        if self._scores:
            auc = roc_auc(np.concatenate(self._scores), np.concatenate(self._truth))
        return self._report(self.counts, auc)


def mean_foreground_dice(report: dict[str, dict[str, float]]) -> float:
    """Mean Dice over the foreground classes of a report, ignoring classes never present."""
    values = [row["dice"] for row in report.values() if not np.isnan(row["dice"])]
    return float(np.mean(values)) if values else float("nan")
