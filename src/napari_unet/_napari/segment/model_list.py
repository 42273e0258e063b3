"""The Segment tab's model row: bundled models, the model trained in this session (under
its name), files or bioimage.io packages opened with *Load…*; *Export…* writes the selected
model for other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QGridLayout, QMessageBox, QPushButton, QWidget

from ...core import ModelFile, bundled_models, load_model
from ...core.data.safe_paths import refuse_inputs
from ...core.errors import CodeNotTrusted
from ...core.interop.export import export_model
from ...core.interop.open import load_any_model
from ..common import narrow, notify_error, notify_info, start_worker
from ..session import Session

#: Save-dialog filters and the export format each one means.
EXPORT_FILTERS = {
    "bioimage.io package (*.zip)": "bioimageio",
    "ONNX (*.onnx)": "onnx",
    "TorchScript (*.pt)": "torchscript",
}
EXPORT_SUFFIXES = {"bioimageio": ".zip", "onnx": ".onnx", "torchscript": ".pt"}


class ModelList(QWidget):
    """The model combo, *Load…* and *Export…*; :meth:`selected_model` is the model to run."""

    #: The list was rebuilt (a model trained, loaded or renamed).
    refreshed = Signal()

    def __init__(self, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.session = session
        self.files: dict[str, Any] = {}  # loaded with Load..., by path
        self.bundled: dict[str, ModelFile] = {}  # bundled models, loaded on first use
        # Saved models are named by their path: long names must not widen the dock.
        self.combo = narrow(QComboBox(self), 8)
        self.load_button = QPushButton("Load…", self)
        self.load_button.clicked.connect(self._load_dialog)
        self.export_button = QPushButton("Export…", self)
        self.export_button.setToolTip(
            "save the selected model as a bioimage.io package (.zip: for deepImageJ, ilastik, "
            "QuPath, bioimage.io), ONNX or TorchScript, as `napari-unet export` does"
        )
        self.export_button.clicked.connect(self._export_dialog)
        self.last_message = ""
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.combo, 0, 0, 1, 2)
        grid.addWidget(self.load_button, 1, 0)
        grid.addWidget(self.export_button, 1, 1)
        session.model_changed.connect(self._on_trained)
        session.trained_renamed.connect(self._on_renamed)

    def refresh(self, select: str | None = None) -> None:
        previous = self.combo.currentText()
        current = select or previous
        self.combo.blockSignals(True)
        self.combo.clear()
        if self.session.trained_name is not None:
            self.combo.addItem(self.session.trained_name)
        self.combo.addItems(list(bundled_models()))
        self.combo.addItems([path for path in self.files if path != self.session.trained_name])
        index = self.combo.findText(current)
        self.combo.setCurrentIndex(max(index, 0))
        self.combo.blockSignals(False)
        if self.combo.currentText() != previous:  # e.g. remembered for the next session
            self.combo.currentTextChanged.emit(self.combo.currentText())
        self.refreshed.emit()

    def _on_trained(self) -> None:
        # A freshly trained model becomes the default (Segment is then one click), unless it
        # scored nothing on the held-out data.
        current = self.combo.currentText()
        if self.session.trained_selectable:
            current = self.session.trained_name or current
        elif current not in bundled_models() and current not in self.files:
            current = next(iter(bundled_models()), current)  # the model it replaced is gone
        self.refresh(select=current)

    def _on_renamed(self, old: str, new: str) -> None:
        self.refresh(select=new if self.combo.currentText() == old else None)

    def add_model_file(
        self, path: str, *, trust_code: bool | None = None, quiet: bool = False
    ) -> str | None:
        """Load a model file or bioimage.io package and select it (errors become
        notifications). A package that needs its own Python code to run is loaded only if the
        user says they trust it (``trust_code=None``: ask). ``quiet``: a model remembered
        from an earlier session that cannot be loaded any more is skipped without a word.
        Returns the error message shown, or None."""
        if quiet and not Path(path).exists():
            return None
        try:
            try:
                model = load_any_model(path, trust_code=bool(trust_code))
            except CodeNotTrusted as err:
                if trust_code is not None or not self.ask_trust(path, err):
                    raise
                model = load_any_model(path, trust_code=True)
            self.files[path] = model
        except Exception as err:
            return None if quiet else notify_error(err)
        self.session.add_loaded(path, model)
        self.refresh(select=path)
        return None

    def ask_trust(self, path: str, err: Exception) -> bool:
        answer = QMessageBox.question(
            self,
            "Run this package's code?",
            f"{err}\n\nRun the Python code of {Path(path).name}?",
            QMessageBox.Yes | QMessageBox.No,
            QMessageBox.No,
        )
        return answer == QMessageBox.Yes

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open a model",
            "",
            "napari-unet models and bioimage.io packages (*.pt *.zip *.yaml);;All files (*)",
        )
        if path:
            self.add_model_file(path)

    def selected_model(self) -> ModelFile:
        name = self.combo.currentText()
        if self.session.is_trained(name) and self.session.trained is not None:
            return self.session.trained
        if name in self.files:
            return self.files[name]
        if name not in self.bundled:
            self.bundled[name] = load_model(name)
        return self.bundled[name]

    def _export_dialog(self) -> None:
        name = self.combo.currentText()
        stem = Path(name).stem if name else "unet-model"
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export the model", f"{stem}.zip", ";;".join(EXPORT_FILTERS)
        )
        if path:  # the dialog asked before replacing a file
            self.export_to(path, EXPORT_FILTERS.get(chosen, "bioimageio"), overwrite=True)

    def export_to(self, path: str, fmt: str, *, overwrite: bool = False) -> Any:
        """Export the selected model to ``path`` as ``fmt`` in a worker thread (a package takes
        seconds: it writes and checks three kinds of weights); returns the worker, or None
        with the reason notified."""
        name = self.combo.currentText()
        suffix = EXPORT_SUFFIXES[fmt]
        if not path.lower().endswith(suffix):
            path += suffix
        try:
            if Path(name).exists():  # a loaded file: never exported onto itself
                refuse_inputs([Path(path)], [Path(name)], "the export")
            model = self.selected_model()
        except Exception as err:
            self.last_message = notify_error(err)
            return None
        bundled = name if name in bundled_models() else None
        self.export_button.setEnabled(False)

        def done(summary: str) -> None:
            self.last_message = notify_info(summary.replace("the model", repr(name), 1))

        def failed(err: BaseException) -> None:
            self.last_message = notify_error(err)

        return start_worker(
            export_model,
            model,
            path,
            fmt,
            name=bundled,
            overwrite=overwrite,
            connect={
                "returned": done,
                "errored": failed,
                "finished": lambda: self.export_button.setEnabled(True),
            },
        )
