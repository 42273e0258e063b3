"""What the Segment and Train panels share: the model trained in this session."""

from __future__ import annotations

import weakref
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..core import ModelFile

TRAINED = "trained in this session"


class Session(QObject):
    """Holds the most recently trained model and tells the panels when it changes."""

    model_changed = Signal()
    loaded_changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.trained: ModelFile | None = None
        # Models opened with Load... (files and bioimage.io packages), by path.
        self.loaded: dict[str, Any] = {}

    @classmethod
    def for_viewer(cls, viewer: Any) -> Session:
        """The viewer's session: one per viewer, so a dock closed and opened again still
        offers the model trained before."""
        # napari hands each plugin widget its own proxy of the viewer: key on the viewer
        # itself, or a reopened dock would find a new, empty session (and the proxy's death
        # would end the old one).
        viewer = getattr(viewer, "__wrapped__", viewer)
        key = id(viewer)
        if key not in _SESSIONS:
            _SESSIONS[key] = cls()
            # Forget it with the viewer (an id may be reused by a later viewer).
            weakref.finalize(viewer, _SESSIONS.pop, key, None)
        return _SESSIONS[key]

    def add_loaded(self, path: str, model: Any) -> None:
        self.loaded[path] = model
        self.loaded_changed.emit()

    def set_trained(self, model: ModelFile) -> None:
        self.trained = model
        self.model_changed.emit()


_SESSIONS: dict[int, Session] = {}
