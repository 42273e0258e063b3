"""What the Segment and Train panels share: the model trained in this session."""

from __future__ import annotations

from qtpy.QtCore import QObject, Signal

from ..core import ModelFile

TRAINED = "trained in this session"


class Session(QObject):
    """Holds the most recently trained model and tells the panels when it changes."""

    model_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.trained: ModelFile | None = None

    def set_trained(self, model: ModelFile) -> None:
        self.trained = model
        self.model_changed.emit()
