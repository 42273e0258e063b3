"""The U-Net dock widget: Segment and Train panels sharing one session."""

from __future__ import annotations

import threading
from typing import Any

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ..core.network.devices import warm_up
from .common import notify_info
from .segment import SegmentPanel
from .session import Session
from .train import TrainPanel


class UNetWidget(QWidget):
    """Dock widget with a Segment tab and a Train tab."""

    def __init__(self, napari_viewer: Any):
        super().__init__()
        self.viewer = napari_viewer
        self.session = Session.for_viewer(napari_viewer)
        self._docked = False
        self.segment = SegmentPanel(napari_viewer, self.session)
        self.train = TrainPanel(napari_viewer, self.session)
        self.tabs = QTabWidget(self)
        for panel, title in ((self.segment, "Segment"), (self.train, "Train")):
            scroll = QScrollArea(self)
            scroll.setWidgetResizable(True)
            scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
            # As wide as the panel needs (plus a vertical scrollbar), never clipped.
            scroll.setMinimumWidth(panel.minimumSizeHint().width() + 40)
            scroll.setWidget(panel)
            self.tabs.addTab(scroll, title)
        self.train.segment_requested.connect(self.segment_with_trained)
        # Corrections are made on the canvas: when the user comes to Train, offer them.
        self.tabs.currentChanged.connect(
            lambda index: index == 1 and [row.suggest_labels() for row in self.train.rows]
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        # Pay torch's one-off start-up costs (the optimiser's first use imports torch._dynamo:
        # 800 modules, stalling the GUI thread 100-200 ms) off the GUI thread and not at the
        # first Train. Started once the dock is drawn: overlapping its construction, the import
        # locks would make the GUI wait far longer.
        QTimer.singleShot(1500, self._warm_up)
        # Closing the viewer destroys this widget while a job may still run: stop it, and
        # make its callbacks do nothing (the panels' Qt parts are gone). Only Python objects
        # are touched here, as the C++ side is being torn down.
        panels = (self.segment, self.train)
        self.destroyed.connect(lambda *_: [panel.shut_down() for panel in panels])

    def event(self, event: QEvent) -> bool:
        # napari's dock "x" takes the widget out of its dock (parent None) and drops it: the
        # jobs it runs would go on unseen, so stop them and say so.
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:
                self._docked = False
                self._dock_closed()
        return super().event(event)

    def _dock_closed(self) -> None:
        jobs = {"segmenting": self.segment, "training": self.train}
        stopped = [name for name, panel in jobs.items() if panel.busy]
        for panel in jobs.values():
            panel.stop()
        if stopped:
            notify_info(
                f"U-Net dock closed: {' and '.join(stopped)} stopped. A model trained so far "
                "stays available: open the U-Net dock again and choose it in Segment's model "
                "list (listed as '... fine-tuned' or 'new model' with the time it finished)."
            )

    @staticmethod
    def _warm_up() -> None:
        threading.Thread(target=warm_up, name="napari-unet warm-up", daemon=True).start()

    def segment_with_trained(self, image_layer: Any = None) -> Any:
        """Switch to Segment and run the model just trained on ``image_layer``."""
        if image_layer is not None:
            self.segment.image.select(image_layer)
        self.segment.refresh_models(select=self.session.trained_name)
        self.tabs.setCurrentIndex(0)
        return self.segment.segment()
