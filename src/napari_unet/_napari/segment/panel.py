"""The Segment panel: image layer + model -> Labels layer, in a background worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...core import (
    ModelFile,
    Segmenter,
    UserInputError,
    bundled_models,
    iter_predict_stack,
    load_model,
)
from ...core.errors import CodeNotTrusted
from ...core.interop.open import load_any_model
from ..common import (
    SHORTCUTS,
    ActivityProgress,
    LayerCombo,
    device_combo,
    narrow,
    notify_error,
    notify_info,
    on_layer_removed,
)
from ..layers import guess_channel_axis, layer_array, shown_block, spatial_transform, write_labels
from ..session import Session
from .object_size import ObjectSizeRow
from .options import SegmentOptions

OUTPUTS = {
    "instances (one label per object)": "instances",
    "semantic (class per pixel)": "semantic",
    "probability image": "probabilities",
}


NO_IMAGE_HINT = (
    "Open an image layer to segment (File > Open Files, or File > Open Sample > "
    "U-Net segmentation for a nuclei or a retina image)."
)


def segment_job(model: ModelFile, device: str, cache: dict, image: Any, **options: Any):
    """Worker body: build (or reuse) the network, then segment block by block."""
    key = (id(model), device)
    if cache.get("key") != key:
        cache.clear()
        cache.update(key=key, segmenter=Segmenter(model, device=device))
    result = yield from iter_predict_stack(cache["segmenter"], image, **options)
    return result


def foreground_or_classes(prob: np.ndarray, spatial_dims: int) -> np.ndarray:
    """(*lead, K, *spatial) probabilities -> the foreground plane for binary models (K <= 2),
    all class planes otherwise."""
    class_axis = prob.ndim - spatial_dims - 1
    if prob.shape[class_axis] <= 2:
        return np.take(prob, prob.shape[class_axis] - 1, axis=class_axis)
    return prob


class SegmentPanel(QWidget):
    """Segment the chosen image layer with a bundled, loaded or freshly trained model."""

    def __init__(self, viewer: Any, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        import napari

        self.viewer = viewer
        self.session = session
        self.worker = None
        self.busy = False  # True from Segment until the job's finished signal
        self._closed = False  # the widget was destroyed (viewer closed): callbacks do nothing
        self.last_message = ""
        self._files: dict[str, ModelFile] = {}
        self._cache: dict[str, Any] = {}

        self.image = LayerCombo(viewer, napari.layers.Image, self)
        self.image.currentIndexChanged.connect(self._guess_axes)
        # Saved models are named by their path: long names must not widen the dock.
        self.model = narrow(QComboBox(self), 8)
        self.load_button = QPushButton("Load…", self)
        self.load_button.clicked.connect(self._load_dialog)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.load_button)
        self.device = device_combo(self)
        self.output = narrow(QComboBox(self))
        self.output.addItems(OUTPUTS)

        advanced = SegmentOptions(self)
        # The options are read where they are set: the panel names them itself.
        self.channel_axis, self.threshold = advanced.channel_axis, advanced.threshold
        self.min_size, self.seed_threshold = advanced.min_size, advanced.seed_threshold
        self.tile_size, self.current_only = advanced.tile_size, advanced.current_only
        self.tta = advanced.tta

        self.run_button = QPushButton("Segment", self)
        self.run_button.clicked.connect(self.segment)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1000)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("model", model_row)
        form.addRow("device", self.device)
        form.addRow("output", self.output)
        self.object_size = ObjectSizeRow(viewer, self)
        self.object_size.estimate_button.clicked.connect(self.estimate_size)
        form.addRow("object size", self.object_size)
        form.addRow("", self.object_size.found)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(advanced)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._running_layer: Any = None
        self._cancel_reason: str | None = None
        self.activity = ActivityProgress()
        on_layer_removed(self, viewer, SegmentPanel._layer_removed)
        session.model_changed.connect(self._on_trained)
        session.trained_renamed.connect(self._on_renamed)
        self.model.currentIndexChanged.connect(self._suggest_output)
        self.refresh_models()
        self._guess_axes()
        self.image.currentIndexChanged.connect(self._update_buttons)
        self._update_buttons()

    # ------------------------------------------------------------ choices

    def refresh_models(self, select: str | None = None) -> None:
        previous = self.model.currentText()
        current = select or previous
        self.model.blockSignals(True)
        self.model.clear()
        if self.session.trained_name is not None:
            self.model.addItem(self.session.trained_name)
        self.model.addItems(list(bundled_models()))
        self.model.addItems([path for path in self._files if path != self.session.trained_name])
        index = self.model.findText(current)
        self.model.setCurrentIndex(max(index, 0))
        self.model.blockSignals(False)
        if self.model.currentText() != previous:  # e.g. remembered for the next session
            self.model.currentTextChanged.emit(self.model.currentText())
        self._suggest_output()

    def _on_trained(self) -> None:
        # A freshly trained model becomes the default (Segment is then one click), unless it
        # scored nothing on the held-out data.
        current = self.model.currentText()
        if self.session.trained_selectable:
            current = self.session.trained_name or current
        elif current not in bundled_models() and current not in self._files:
            current = next(iter(bundled_models()), current)  # the model it replaced is gone
        self.refresh_models(select=current)

    def _on_renamed(self, old: str, new: str) -> None:
        self.refresh_models(select=new if self.model.currentText() == old else None)

    def add_model_file(
        self, path: str, *, trust_code: bool | None = None, quiet: bool = False
    ) -> None:
        """Load a model file or bioimage.io package and select it (errors become
        notifications). A package that needs its own Python code to run is loaded only if the
        user says they trust it (``trust_code=None``: ask). ``quiet``: a model remembered
        from an earlier session that cannot be loaded any more is skipped without a word."""
        if quiet and not Path(path).exists():
            return
        try:
            try:
                model = load_any_model(path, trust_code=bool(trust_code))
            except CodeNotTrusted as err:
                if trust_code is not None or not self._ask_trust(path, err):
                    raise
                model = load_any_model(path, trust_code=True)
            self._files[path] = model
        except Exception as err:
            if not quiet:
                self.last_message = notify_error(err)
            return
        self.session.add_loaded(path, model)
        self.refresh_models(select=path)

    def _ask_trust(self, path: str, err: Exception) -> bool:
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
        name = self.model.currentText()
        if self.session.is_trained(name) and self.session.trained is not None:
            return self.session.trained
        if name in self._files:
            return self._files[name]
        if name not in self._cache.setdefault("bundled", {}):
            self._cache["bundled"][name] = load_model(name)
        return self._cache["bundled"][name]

    def _suggest_output(self, *_: Any) -> None:
        """Pick the output that suits the selected model (see ``ModelFile.suggested_output``)."""
        try:
            suggestion = self.selected_model().suggested_output
        except Exception:  # a broken file is reported when Segment is pressed
            return
        self.output.setCurrentText(next(k for k, v in OUTPUTS.items() if v == suggestion))

    def _guess_axes(self, *_: Any) -> None:
        layer = self.image.layer()
        self.channel_axis.clear()
        self.channel_axis.addItem("none", None)
        if layer is None:
            return
        ndim = layer_array(layer).ndim
        for axis in range(ndim):
            self.channel_axis.addItem(f"axis {axis} (size {layer_array(layer).shape[axis]})", axis)
        guess = guess_channel_axis(layer)
        self.channel_axis.setCurrentIndex(
            0 if guess is None else self.channel_axis.findData(guess % ndim)
        )

    # ------------------------------------------------------------ running

    def segment(self) -> Any:
        """Start segmenting; returns the worker (None if the input is not usable)."""
        from napari.qt.threading import create_worker

        chosen = self._layer_and_model()
        if chosen is None:
            return None
        layer, model = chosen
        try:
            channel_axis = self.channel_axis.currentData()
            index = None
            if self.current_only.isChecked():
                index = (
                    shown_block(self.viewer, layer, model.config.spatial_dims, channel_axis) or None
                )
            output = OUTPUTS[self.output.currentText()]
            options = {
                "channel_axis": channel_axis,
                "index": index,
                "threshold": self.threshold.value(),
                "tile_size": self.tile_size.value() or None,
                "min_size": self.min_size.value() or None,
                **self.object_size.options(layer, model.config.spatial_dims),
                "seed_threshold": self.seed_threshold.value(),
                "test_time_augmentation": self.tta.isChecked(),
                "output": output,
            }
        except Exception as err:
            self.last_message = notify_error(err)
            return None
        name = self.model.currentText()
        self.session.set_used(name)
        self.busy = True
        self._running_layer = layer
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"segmenting {layer.name}…")
        self.activity.start(f"U-Net: segmenting {layer.name}", 1000)
        worker = create_worker(
            segment_job,
            model,
            self.device.currentText(),
            self._cache,
            layer_array(layer),
            **options,
            _start_thread=True,
            _connect={  # handlers given here, or superqt re-raises errors in the GUI thread
                "yielded": self._on_progress,
                "returned": lambda result: self._show(
                    result, layer, channel_axis, index, output, model, name
                ),
                "errored": self._failed,
                "aborted": self._cancelled,
                "finished": self._done,
            },
        )
        self.worker = worker
        return worker

    def estimate_size(self) -> Any:
        """The *estimate* button: the objects' size in the chosen image, drawn as a circle."""
        chosen = self._layer_and_model()
        if chosen is None:
            return None
        layer, model = chosen
        return self.object_size.estimate(layer, model, self.channel_axis.currentData())

    def _layer_and_model(self) -> tuple[Any, ModelFile] | None:
        """The chosen image layer and model; None (the reason notified) when either is not
        usable."""
        layer = self.image.layer()
        if layer is None:
            self.last_message = notify_error(UserInputError(NO_IMAGE_HINT))
            return None
        try:
            return layer, self.selected_model()
        except Exception as err:
            self.last_message = notify_error(err)
            return None

    def _update_buttons(self, *_: Any) -> None:
        """Segment and *estimate* need an image layer: disabled, with a hint, without one."""
        has_image = self.image.layer() is not None
        self.run_button.setEnabled(has_image and not self.busy)
        self.object_size.estimate_button.setEnabled(has_image)
        self.run_button.setToolTip(
            f"shortcut: {SHORTCUTS['Segment']}" if has_image else NO_IMAGE_HINT
        )
        if not has_image and not self.busy:
            self.status.setText(NO_IMAGE_HINT)
        elif self.status.text() == NO_IMAGE_HINT:
            self.status.setText("")

    def cancel(self) -> None:
        """The Cancel button: stop after the current tiles; nothing is written."""
        if self.busy and self.worker is not None:
            self.status.setText("cancelling…")
            self.worker.quit()

    def _layer_removed(self, layer: Any) -> None:
        # Its result could not be shown: stop now rather than finish and discard.
        if self.busy and layer is self._running_layer:
            self._cancel_reason = (
                f"The image layer {layer.name!r} was removed while it was segmented: "
                "segmenting stopped, nothing was written."
            )
            self.cancel()

    def _cancelled(self) -> None:
        if self._closed:
            return
        reason, self._cancel_reason = self._cancel_reason, None
        self.last_message = notify_info(reason) if reason else "cancelled; nothing was written"
        self.status.setText(self.last_message)
        self.progress.setValue(0)

    def stop(self) -> None:
        """Abandon the running segmentation (its result is not written)."""
        if self.worker is not None and self.busy:
            self.worker.quit()

    def shut_down(self) -> None:
        """The widget is being destroyed: stop the job and ignore its callbacks."""
        self._closed = True
        self.stop()
        self.activity.close()

    def _on_progress(self, progress: Any) -> None:
        if not self._closed:
            self.progress.setValue(int(1000 * progress.fraction))
            self.activity.set(int(1000 * progress.fraction))

    def _done(self) -> None:
        self.busy = False
        self._running_layer = None
        self.activity.close()
        if not self._closed:
            self.cancel_button.setEnabled(False)
            self._update_buttons()

    def _failed(self, error: BaseException) -> None:
        if self._closed:
            return
        self.last_message = notify_error(error)
        self.status.setText(self.last_message)
        self.progress.setValue(0)

    def _show(
        self,
        result: Any,
        layer: Any,
        channel_axis: int | None,
        index: Any,
        output: str,
        model: ModelFile,
        model_name: str,
    ) -> None:
        if self._closed:
            return
        if layer not in self.viewer.layers:
            self.last_message = notify_info(
                f"The image layer {layer.name!r} was removed while it was segmented; "
                "the result was discarded."
            )
            self.status.setText(self.last_message)
            self.progress.setValue(0)
            return
        self.progress.setValue(1000)
        name = f"{layer.name} U-Net"
        if output == "probabilities":
            data = foreground_or_classes(result.probabilities, model.config.spatial_dims)
            prob_name = f"{name} probability"
            if prob_name in self.viewer.layers:
                self.viewer.layers[prob_name].data = data
            else:
                self.viewer.add_image(
                    data,
                    name=prob_name,
                    colormap="magma",
                    contrast_limits=(0, 1),
                    blending="additive",
                    **spatial_transform(layer, channel_axis),
                )
        target = write_labels(
            self.viewer,
            name,
            result.labels,
            layer,
            channel_axis,
            index=index,
            model=model_name,
            image=layer.name,
        )
        found = int(result.labels.max()) if output == "instances" else None
        self.last_message = (
            f"{target.name}: {found} objects" if found is not None else f"{target.name} written"
        ) + f" (model: {model_name}; device: {result.device})"
        if result.scale is not None:
            self.last_message += f"; {result.scale.describe()}"
        self.object_size.show_choice(result.scale)
        self.status.setText(self.last_message)
