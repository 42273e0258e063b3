"""Small Qt pieces shared by the panels: a layer picker, error reporting, a section that
opens and closes."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import warnings
import weakref
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QToolButton, QVBoxLayout, QWidget

from ..core import UserInputError, available_devices

log = logging.getLogger("napari_unet")

#: Keyboard shortcuts of the dock (Ctrl is Cmd on macOS), chosen apart from napari's own and
#: from Ctrl+Shift+U (Unicode entry in Linux input methods).
SHORTCUTS = {"Segment": "Ctrl+Shift+G", "Train": "Ctrl+Shift+B"}


def _disconnect(viewer: Any, refresh: Any, inserted: Any) -> None:
    """Take a deleted combo's callbacks off the viewer's layer events. It runs while Qt
    deletes the widget, where an exception would abort the program (PyQt): a viewer being
    torn down itself may have nothing left to disconnect, and that is fine."""
    try:
        layers = viewer.layers
        layers.events.inserted.disconnect(inserted)
        layers.events.removed.disconnect(refresh)
        for layer in list(layers):
            layer.events.name.disconnect(refresh)
    except Exception:  # nothing to undo once the viewer is gone
        pass


def on_layer_removed(widget: QWidget, viewer: Any, callback: Any) -> None:
    """Call ``callback(widget, layer)`` when a layer leaves ``viewer``, for as long as
    ``widget`` lives: held weakly and disconnected when Qt deletes it (a closed dock must not
    hear the viewer's later events)."""
    real = getattr(viewer, "__wrapped__", viewer)
    me = weakref.ref(widget)

    def removed(event: Any) -> None:
        target = me()
        if target is not None:
            callback(target, event.value)

    real.layers.events.removed.connect(removed)

    def disconnect(*_: Any) -> None:
        with contextlib.suppress(Exception):  # the viewer went first: nothing left to undo
            real.layers.events.removed.disconnect(removed)

    widget.destroyed.connect(disconnect)


class LayerCombo(QComboBox):
    """Picks a layer of one type (e.g. ``napari.layers.Image``) and follows the layer list."""

    #: The list of layers offered was rebuilt (a layer came, went or was renamed).
    refreshed = Signal()

    def __init__(self, viewer: Any, layer_type: type, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.layer_type = layer_type
        # Long layer names must not widen the dock and squeeze the canvas.
        narrow(self, 8)
        # A closed dock's combos are deleted on the Qt side while the viewer lives on: they
        # must stop hearing of its layers, or every later change would raise in them. The
        # viewer's events get plain functions that hold the combo weakly (a deleted widget
        # cannot even be compared any more), on the viewer itself rather than on the proxy
        # napari hands to plugins (which wraps callbacks, so they could not be taken off).
        real = getattr(viewer, "__wrapped__", viewer)
        me = weakref.ref(self)

        def on_change(*_: Any) -> None:
            combo = me()
            if combo is not None:
                combo.refresh()

        def on_inserted(event: Any) -> None:
            event.value.events.name.connect(on_change)
            on_change()

        real.layers.events.inserted.connect(on_inserted)
        real.layers.events.removed.connect(on_change)
        for layer in real.layers:
            layer.events.name.connect(on_change)
        self.destroyed.connect(lambda *_: _disconnect(real, on_change, on_inserted))
        self.refresh()

    def refresh(self, *_: Any) -> None:
        current = self.layer()
        # Layers live in a Python list beside the items: Qt returns copies of item data, so
        # a layer stored in the combo could not be found again by identity.
        self._layers = [layer for layer in self.viewer.layers if isinstance(layer, self.layer_type)]
        self.blockSignals(True)
        self.clear()
        self.addItems([layer.name for layer in self._layers])
        if current is not None and current in self._layers:
            self.setCurrentIndex(self._layers.index(current))
        self.blockSignals(False)
        if self.layer() is not current:
            # The chosen layer changed (the first layer arrived, or the chosen one went):
            # listeners such as the channel-axis guess must hear of it.
            self.currentIndexChanged.emit(self.currentIndex())
        self.refreshed.emit()

    def layer(self) -> Any:
        """The chosen layer, or None."""
        index = self.currentIndex()
        layers = getattr(self, "_layers", [])
        return layers[index] if 0 <= index < len(layers) else None

    def layers(self) -> list[Any]:
        """The layers offered, in the viewer's order."""
        return list(getattr(self, "_layers", []))

    def select(self, layer: Any) -> None:
        """Choose ``layer`` (ignored if it is not in the list)."""
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer))


def narrow(combo: QComboBox, characters: int = 10) -> QComboBox:
    """Let ``combo`` be as narrow as ``characters`` letters: long item texts are elided in the
    box (and shown whole in its list) instead of widening the dock."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)
    return combo


def device_combo(parent: QWidget | None = None) -> QComboBox:
    combo = QComboBox(parent)
    combo.addItems(["auto", *available_devices()])
    return combo


def error_message(error: BaseException) -> str:
    """What to tell the user about an error raised by a background job."""
    if isinstance(error, UserInputError):
        return str(error)
    if isinstance(error, MemoryError) or "out of memory" in str(error).lower():
        return "Out of memory: use a smaller batch size, patch size or tile size, or the CPU."
    log.exception("napari-unet job failed", exc_info=error)
    if isinstance(error, ValueError) and str(error):
        # A value the user gave that a library refused: the message says it, the class
        # name would only look like a crash (the traceback is in the log).
        return str(error)
    return f"{type(error).__name__}: {error}"


def notify_info(message: str) -> str:
    """Show ``message`` as a napari notification; returns it."""
    from napari.utils.notifications import show_info

    show_info(message)
    return message


def notify_error(error: BaseException) -> str:
    """Show ``error`` as a napari notification; returns the message shown."""
    from napari.utils.notifications import show_error

    message = error_message(error)
    show_error(message)
    return message


class Disclosure(QWidget):
    """A titled section that opens and closes (▸ / ▾): what most users need stays in view,
    the rest one click away. Closed content is hidden, not squeezed, so the dock keeps a
    narrow width and nothing in it is clipped."""

    def __init__(self, title: str, parent: QWidget | None = None, *, expanded: bool = False):
        super().__init__(parent)
        self.toggle = QToolButton(self)
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.body = QWidget(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.toggle.toggled.connect(self._show)
        self.toggle.setChecked(expanded)
        self._show(expanded)

    def _show(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
        self.body.setVisible(expanded)

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.setChecked(expanded)

    def is_expanded(self) -> bool:
        return self.toggle.isChecked()


class ActivityProgress:
    """A job's progress in napari's activity dock (beside the panel's own bar): napari's
    ``progress``, driven from the GUI thread by the job's updates."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._pending: tuple[str, int] | None = None

    def start(self, description: str, total: int) -> None:
        """Show a new bar in napari's activity dock."""
        self.close()
        self._pending = (description, max(int(total), 1))
        # Made at once: made later, on a turn of the event loop, napari's activity dock
        # starting its animation hung the GUI thread while our workers imported.
        self._create()

    def _create(self) -> None:
        if self._pending is None:
            return
        from napari.utils import progress

        (description, total), self._pending = self._pending, None
        self._bar = progress(total=total, desc=description)

    def set(self, done: int, total: int | None = None) -> None:
        """Show ``done`` of ``total`` (the total may grow, as a resumed training's does)."""
        if self._bar is None:
            return
        if total is not None and total != self._bar.total:
            self._bar.total = max(int(total), 1)
        step = int(done) - int(self._bar.n)
        if step > 0:
            self._bar.update(step)

    def close(self) -> None:
        self._pending = None
        if self._bar is not None:
            bar, self._bar = self._bar, None
            with contextlib.suppress(Exception):  # its dock may be gone with the viewer
                bar.close()


def _worker_of(hook: Any) -> Any:
    """The thread worker whose ``showwarning`` replacement ``hook`` is, or None."""
    if "WorkerBase.run" not in getattr(hook, "__qualname__", ""):
        return None
    for cell in getattr(hook, "__closure__", None) or ():
        with contextlib.suppress(ValueError):  # an empty cell
            if hasattr(cell.cell_contents, "is_running"):
                return cell.cell_contents
    return None


_BASE_WARNING_HOOK: list[Any] = []


def remember_warning_hook() -> None:
    """Note the process's own ``warnings.showwarning`` (napari's, once napari runs), while no
    thread worker has replaced it."""
    if not _BASE_WARNING_HOOK and _worker_of(warnings.showwarning) is None:
        _BASE_WARNING_HOOK.append(warnings.showwarning)


def drop_stale_warning_hook() -> None:
    """Put back the process's ``warnings.showwarning`` if a finished thread worker's is still
    installed.

    Each napari / superqt thread worker swaps ``warnings.showwarning`` while it runs (with
    ``warnings.catch_warnings``, which is not thread-safe): when workers overlap (Segment while
    Train runs, the torch warm-up) one can restore another's replacement after that one has
    finished. Its signals are then deleted, and every later warning, in any thread, raises
    ``RuntimeError: wrapped C/C++ object ... has been deleted`` (a job would fail on a
    harmless warning). Called when each of our workers finishes."""
    worker = _worker_of(warnings.showwarning)
    if worker is not None and not worker.is_running and _BASE_WARNING_HOOK:
        warnings.showwarning = _BASE_WARNING_HOOK[0]


class _Imports:
    """Our workers never import concurrently with the torch warm-up: two threads importing
    large packages at once (torch._dynamo in one, scipy through scikit-image in the other)
    deadlocked on Python's import locks here, with napari's GUI thread waiting too. A job
    waits for a warm-up under way; the warm-up is skipped while a job runs (the job imports
    what it needs itself)."""

    lock = threading.Lock()
    jobs = 0


def warm_up_unless_busy(warm_up: Any) -> None:
    """Run ``warm_up()`` unless one of our jobs is running (see :class:`_Imports`)."""
    with _Imports.lock:
        if _Imports.jobs == 0:
            warm_up()


def _job(function: Any) -> Any:
    """``function`` (a plain or a generator function) counted as a running job, started only
    once no warm-up is under way."""

    def enter() -> None:
        with _Imports.lock:
            _Imports.jobs += 1

    def leave() -> None:
        with _Imports.lock:
            _Imports.jobs -= 1

    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator_job(*args: Any, **kwargs: Any) -> Any:
            enter()
            try:
                return (yield from function(*args, **kwargs))
            finally:
                leave()

        return generator_job

    @functools.wraps(function)
    def plain_job(*args: Any, **kwargs: Any) -> Any:
        enter()
        try:
            return function(*args, **kwargs)
        finally:
            leave()

    return plain_job


def start_worker(function: Any, *args: Any, connect: dict[str, Any] | None = None, **kwargs: Any):
    """Run ``function(*args, **kwargs)`` in a napari thread worker, its signals connected to
    ``connect``'s handlers before it starts (superqt re-raises errors in the GUI thread for a
    worker without an *errored* handler); returns the started worker. It waits for a torch
    warm-up under way (see :class:`_Imports`)."""
    from napari.qt.threading import create_worker

    remember_warning_hook()
    job = function if function is warm_up_unless_busy else _job(function)
    worker = create_worker(job, *args, _start_thread=False, _connect=connect or {}, **kwargs)
    worker.finished.connect(drop_stale_warning_hook)
    worker.start()
    return worker
