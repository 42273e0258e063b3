"""Settings the dock remembers between napari sessions (device, tile size, last model, the
training settings), kept in Qt's per-user settings store, with a way back to the defaults."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QAbstractButton, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

ORGANIZATION = "napari-unet-torch"
APPLICATION = "dock"
#: Bumped when a remembered value changes meaning: older values are then ignored.
VERSION = 1


def settings_store() -> QSettings:
    """The per-user store (an ini file under the user's config folder: on Linux
    ``~/.config/napari-unet-torch/dock.ini``). Tests point it elsewhere with
    ``QSettings.setPath``."""
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANIZATION, APPLICATION)


def _read(widget: QWidget) -> Any:
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, QAbstractButton):
        return widget.isChecked()
    return widget.value()


def _write(widget: QWidget, value: Any) -> None:
    """Set ``widget`` to a stored ``value``; values it cannot take (a device this machine
    lacks, a number out of range, text where a number belongs) are ignored."""
    try:
        if isinstance(widget, QComboBox):
            if widget.findText(str(value)) >= 0:
                widget.setCurrentText(str(value))
        elif isinstance(widget, QAbstractButton):
            widget.setChecked(str(value).lower() in ("true", "1"))
        elif isinstance(widget, QDoubleSpinBox):
            widget.setValue(float(value))
        elif isinstance(widget, QSpinBox):
            widget.setValue(int(float(value)))
    except (TypeError, ValueError):
        pass


def _changed(widget: QWidget) -> Any:
    if isinstance(widget, QComboBox):
        return widget.currentTextChanged
    if isinstance(widget, QAbstractButton):
        return widget.toggled
    return widget.valueChanged


class RememberedSettings:
    """Widgets whose values are stored under a key as they change and restored when a dock
    opens; :meth:`restore_defaults` puts back what they showed before anything was restored."""

    def __init__(self, store: QSettings | None = None):
        self.store = store if store is not None else settings_store()
        self.widgets: dict[str, QWidget] = {}
        self.defaults: dict[str, Any] = {}
        if self.store.value("version") not in (None, str(VERSION), VERSION):
            self.store.clear()

    def add(self, key: str, widget: QWidget) -> None:
        """Remember ``widget`` under ``key``: restore its stored value now, store changes."""
        self.widgets[key] = widget
        self.defaults[key] = _read(widget)
        stored = self.store.value(key)
        if stored is not None:
            _write(widget, stored)
        _changed(widget).connect(lambda *_: self.save(key))

    def save(self, key: str) -> None:
        self.store.setValue("version", VERSION)
        self.store.setValue(key, _read(self.widgets[key]))

    def stored(self, key: str) -> Any:
        return self.store.value(key)

    def restore_defaults(self) -> None:
        """Every remembered widget back to its default, and the store emptied."""
        for key, widget in self.widgets.items():
            _write(widget, self.defaults[key])
        self.store.clear()
        self.store.sync()
