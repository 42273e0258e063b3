"""The U-Net dock widget: Segment and Train panels sharing one session."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QPushButton,
    QScrollArea,
    QShortcut,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.network.devices import warm_up
from .common import SHORTCUTS, notify_info, start_worker, warm_up_unless_busy
from .remembered import RememberedSettings
from .segment import SegmentPanel
from .session import Session
from .train import TrainPanel

_WARMED_UP = False


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
        self.remembered = self._remember()
        self._add_shortcuts()
        restore = QPushButton("Restore default settings", self)
        restore.setToolTip("the dock remembers its settings between sessions; this forgets them")
        restore.clicked.connect(self.remembered.restore_defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(restore)
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

    def _add_shortcuts(self) -> None:
        """Segment and Train from anywhere in the window (the canvas included), as their
        buttons would: only when the button is enabled."""
        buttons = {"Segment": self.segment.run_button, "Train": self.train.train_button}
        self.shortcuts: dict[str, QShortcut] = {}
        for name, keys in SHORTCUTS.items():
            button = buttons[name]
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.WindowShortcut)
            shortcut.activated.connect(lambda b=button: b.isEnabled() and b.click())
            self.shortcuts[name] = shortcut

    def _remember(self) -> RememberedSettings:
        """What the dock remembers between sessions, restored now."""
        remembered = RememberedSettings()
        seg, settings = self.segment, self.train.settings
        stored_model = remembered.stored("segment/model")
        if stored_model and seg.model.findText(str(stored_model)) < 0:
            seg.add_model_file(str(stored_model), trust_code=False, quiet=True)
        for key, widget in {
            "segment/model": seg.model,
            "segment/device": seg.device,
            "segment/tile_size": seg.tile_size,
            "segment/object_size": seg.object_size.mode,
            # The device first: it sets patch and batch defaults, restored after it.
            "train/device": settings.device,
            "train/epochs": settings.epochs,
            "train/minutes": settings.minutes,
            "train/plan": settings.plan,
            "train/preview": settings.preview,
            "train/preview_every": settings.preview_every,
            "train/steps": settings.steps,
            "train/learning_rate": settings.lr,
            "train/patch": settings.patch,
            "train/batch": settings.batch,
            "train/val_fraction": settings.val_fraction,
            "train/augment": settings.augment,
            "train/zoom": settings.zoom,
            "train/low_resolution": settings.low_resolution,
        }.items():
            remembered.add(key, widget)
        return remembered

    @staticmethod
    def _warm_up() -> None:
        global _WARMED_UP
        if not _WARMED_UP:  # once per process: a second dock finds torch warm
            _WARMED_UP = True
            start_worker(warm_up_unless_busy, warm_up)

    def segment_with_trained(self, image_layer: Any = None) -> Any:
        """Switch to Segment and run the model just trained on ``image_layer``."""
        if image_layer is not None:
            self.segment.image.select(image_layer)
        self.segment.refresh_models(select=self.session.trained_name)
        self.tabs.setCurrentIndex(0)
        return self.segment.segment()
