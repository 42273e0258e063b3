"""A small live plot of training loss, validation loss and validation score (QPainter only)."""

from __future__ import annotations

import itertools
import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

SERIES = {  # name: (colour, which axis)
    "train loss": ("#4fc3f7", "loss"),
    "val loss": ("#ffb74d", "loss"),
    "val score": ("#81c784", "score"),
}


class LossPlot(QWidget):
    """Plots series against training step: losses on a left scale, the score on 0..1."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.clear()

    def clear(self) -> None:
        self.points: dict[str, list[tuple[int, float]]] = {name: [] for name in SERIES}
        self.update()

    def add(self, name: str, step: int, value: float | None) -> None:
        if value is None or not math.isfinite(value):
            return
        self.points[name].append((step, float(value)))
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        left, right, top, bottom = 8, 8, 18, 8
        painter.setPen(QColor("#888888"))
        painter.drawRect(left, top, w - left - right, h - top - bottom)
        steps = [s for pts in self.points.values() for s, _ in pts]
        losses = [v for n, pts in self.points.items() if SERIES[n][1] == "loss" for _, v in pts]
        x_max = max(steps, default=1) or 1
        y_max = max(losses, default=1.0) or 1.0
        legend_x = left
        for name, (colour, axis) in SERIES.items():
            painter.setPen(QColor(colour))
            painter.drawText(legend_x, 13, name)
            legend_x += painter.fontMetrics().horizontalAdvance(name) + 12
            pts = self.points[name]
            if not pts:
                continue
            scale = 1.0 if axis == "score" else y_max
            painter.setPen(QPen(QColor(colour), 1.6))
            mapped = [
                QPointF(
                    left + (w - left - right) * s / x_max,
                    h - bottom - (h - top - bottom) * min(v / scale, 1.0),
                )
                for s, v in pts
            ]
            if len(mapped) == 1:
                painter.drawEllipse(mapped[0], 2, 2)
            for a, b in itertools.pairwise(mapped):
                painter.drawLine(a, b)
        painter.setPen(Qt.NoPen)
        painter.end()
