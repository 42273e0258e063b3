"""What the Segment and Train panels share: the model trained in this session (under a name
that says what it is), the models loaded from files, and the model last used to segment."""

from __future__ import annotations

import time
import weakref
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..core import ModelFile


class Session(QObject):
    """Holds the most recently trained model and tells the panels when it changes."""

    #: A model was trained: the panels refresh their lists.
    model_changed = Signal()
    #: The trained model was saved (old name, new name): listed under its path from now on.
    trained_renamed = Signal(str, str)
    loaded_changed = Signal()
    #: Segment ran with the model of this name: Train starts from it by default.
    used_changed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.trained: ModelFile | None = None
        #: How the trained model is listed: what it was trained from and when, or the path
        #: it was saved to.
        self.trained_name: str | None = None
        #: Whether Segment should switch to the trained model (not when it scored 0).
        self.trained_selectable = True
        # Models opened with Load... (files and bioimage.io packages), by path.
        self.loaded: dict[str, Any] = {}
        self.used: str | None = None

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

    def set_trained(self, model: ModelFile, base: str | None, *, selectable: bool = True) -> str:
        """Keep ``model``, trained from the model named ``base`` (None: from scratch); returns
        the name it is listed under."""
        self.trained = model
        origin = f"{base} fine-tuned" if base else "new model"
        self.trained_name = f"{origin} {time.strftime('%H:%M:%S')}"
        self.trained_selectable = selectable
        self.model_changed.emit()
        return self.trained_name

    def rename_trained(self, name: str) -> None:
        """The trained model was saved: list it under its path from now on."""
        if self.trained is None or self.trained_name is None:
            return
        old, self.trained_name = self.trained_name, name
        if self.used == old:
            self.used = name
        self.trained_renamed.emit(old, name)

    def is_trained(self, name: str) -> bool:
        """Whether ``name`` is how the trained model is listed."""
        return self.trained is not None and name == self.trained_name

    def set_used(self, name: str) -> None:
        self.used = name
        self.used_changed.emit(name)


_SESSIONS: dict[int, Session] = {}
