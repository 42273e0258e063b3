"""The Segment panel: image layer + model -> Labels layer, in a background worker."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ...core import (
    ModelFile,
    UserInputError,
)
from ...core.data.image_kind import mismatch_warning
from ...core.predict.inference import leading_shape
from ..common import (
    SHORTCUTS,
    ActivityProgress,
    LayerCombo,
    device_combo,
    narrow,
    notify_error,
    notify_info,
    on_layer_removed,
    start_worker,
)
from ..layers import guess_channel_axis, layer_array, shown_block, spatial_transform, write_labels
from ..session import Session
from .batch import BatchBox, BatchProgress, FileDone, LayerDone
from .jobs import segment_job
from .model_list import ModelList
from .object_size import ObjectSizeRow
from .options import MATCH_MODES, TIME_LABELS, SegmentOptions

OUTPUTS = {
    "instances (one label per object)": "instances",
    "semantic (class per pixel)": "semantic",
    "probability image": "probabilities",
}


NO_IMAGE_HINT = (
    "Open an image layer to segment (File > Open Files, or File > Open Sample > "
    "U-Net segmentation for a nuclei or a retina image)."
)


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
        self.cache: dict[str, Any] = {}  # the network last built, for the next run

        self.image = LayerCombo(viewer, napari.layers.Image, self)
        self.image.currentIndexChanged.connect(self._guess_axes)
        self.models = ModelList(session, self)
        self.model, self.load_button = self.models.combo, self.models.load_button
        self.device = device_combo(self)
        self.output = narrow(QComboBox(self))
        self.output.addItems(OUTPUTS)

        advanced = SegmentOptions(self)
        # The options are read where they are set: the panel names them itself.
        self.channel_axis, self.threshold = advanced.channel_axis, advanced.threshold
        self.min_size, self.seed_threshold = advanced.min_size, advanced.seed_threshold
        self.tile_size, self.current_only = advanced.tile_size, advanced.current_only
        self.tta, self.match_slices = advanced.tta, advanced.match_slices

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
        form.addRow("model", self.models)
        form.addRow("device", self.device)
        form.addRow("output", self.output)
        self.object_size = ObjectSizeRow(viewer, self)
        self.object_size.estimate_button.clicked.connect(self.estimate_size)
        form.addRow("object size", self.object_size)
        form.addRow("", self.object_size.found)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(advanced)
        self.batch = BatchBox(self)
        layout.addWidget(self.batch)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._running_layer: Any = None
        self._cancel_reason: str | None = None
        self._cancel_note = ""  # what Cancel leaves behind, said when it lands
        self.mismatch: str | None = None  # the warning before the last run, if any
        self.activity = ActivityProgress()
        on_layer_removed(self, viewer, SegmentPanel._layer_removed)
        self.models.refreshed.connect(self._suggest_output)
        self.model.currentIndexChanged.connect(self._suggest_output)
        self.refresh_models()
        self._guess_axes()
        self.image.currentIndexChanged.connect(self._update_buttons)
        self._update_buttons()

    # ------------------------------------------------------------ choices

    def refresh_models(self, select: str | None = None) -> None:
        self.models.refresh(select)

    def add_model_file(
        self, path: str, *, trust_code: bool | None = None, quiet: bool = False
    ) -> None:
        """Load a model file or bioimage.io package and select it (see
        :meth:`ModelList.add_model_file`); errors become notifications."""
        message = self.models.add_model_file(path, trust_code=trust_code, quiet=quiet)
        if message:
            self.last_message = message

    def selected_model(self) -> ModelFile:
        return self.models.selected_model()

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
        chosen = self._layer_and_model()
        if chosen is None:
            return None
        layer, model = chosen
        try:
            channel_axis = self.channel_axis.currentData()
            index = None
            if self.current_only.isChecked():
                dims = model.config.spatial_dims
                index = shown_block(self.viewer, layer, dims, channel_axis) or None
            options = self.run_options(layer, model, channel_axis, index)
        except Exception as err:
            self.last_message = notify_error(err)
            return None
        name = self.model.currentText()
        output = options["output"]
        self._running_layer = layer
        self._warn_mismatch(model, layer, channel_axis)
        return self.start_job(
            f"segmenting {layer.name}",
            segment_job,
            (model, self.device.currentText(), self.cache, layer_array(layer)),
            options,
            lambda result: self.show_result(
                result, layer, channel_axis, index, output, model, name
            ),
        )

    def _warn_mismatch(self, model: ModelFile, layer: Any, channel_axis: int | None) -> None:
        """Say so before running when the image looks unlike all the model learnt from (a
        nuclei model on a fundus photograph): the run goes on, the user knows why it may
        disappoint."""
        try:
            warning = mismatch_warning(model, layer_array(layer), channel_axis)
        except Exception:  # a look at the image that fails must not stop the run
            warning = None
        self.mismatch = warning
        if warning:
            from napari.utils.notifications import show_warning

            show_warning(f"{layer.name}: {warning}")

    def run_options(
        self, layer: Any, model: ModelFile, channel_axis: int | None, index: Any = None
    ) -> dict[str, Any]:
        """The settings of the panel for segmenting ``layer`` (None: files) with ``model``."""
        return {
            "channel_axis": channel_axis,
            "index": index,
            "threshold": self.threshold.value(),
            "tile_size": self.tile_size.value() or None,
            "min_size": self.min_size.value() or None,
            **self.object_size.options(layer, model.config.spatial_dims),
            "seed_threshold": self.seed_threshold.value(),
            "test_time_augmentation": self.tta.isChecked(),
            "output": OUTPUTS[self.output.currentText()],
            "match_stack_dims": (
                self._match_stack_dims(layer, model, channel_axis, index) if layer else 0
            ),
        }

    def start_job(
        self,
        what: str,
        job: Any,
        args: tuple,
        options: dict,
        returned: Any = None,
        cancelled: str = "cancelled; nothing was written",
    ) -> Any:
        """Run ``job(*args, **options)`` in a worker with the panel's progress, Cancel and
        error handling; ``returned`` gets its result, ``cancelled`` is said on Cancel."""
        self._cancel_note = cancelled
        self.session.set_used(self.model.currentText())
        self.busy = True
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        if self.progress.value():  # QProgressBar repaints at once: only when it shows more
            self.progress.setValue(0)
        self.status.setText(f"{what}…")
        self.activity.start(f"U-Net: {what}", 1000)
        connect = {  # handlers given here, or superqt re-raises errors in the GUI thread
            "yielded": self._on_progress,
            "errored": self._failed,
            "aborted": self._cancelled,
            "finished": self._done,
        }
        if returned is not None:
            connect["returned"] = returned
        self.worker = start_worker(job, *args, **options, connect=connect)
        return self.worker

    def _match_stack_dims(
        self, layer: Any, model: ModelFile, channel_axis: int | None, index: Any
    ) -> int:
        """How many stack axes the objects are matched along (0: not at all): instances of
        a stack, matched when asked, or for time series when its last stack axis is time."""
        mode = MATCH_MODES[self.match_slices.currentText()]
        shape = tuple(layer_array(layer).shape)
        stack = leading_shape(shape, model.config.spatial_dims, channel_axis)
        if (
            mode == "never"
            or not stack
            or index
            or OUTPUTS[self.output.currentText()] != "instances"
        ):
            return 0
        if mode == "time":
            labels = [str(label).lower() for label in getattr(layer, "axis_labels", ())]
            if channel_axis is not None and not getattr(layer, "rgb", False) and labels:
                del labels[channel_axis % len(labels)]
            if len(labels) < len(stack) or labels[len(stack) - 1] not in TIME_LABELS:
                return 0
        return len(stack)

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
        self.last_message = notify_info(reason) if reason else self._cancel_note
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
        if self._closed:
            return
        if isinstance(progress, LayerDone):
            self.show_result(progress.result, *progress.key)
            return
        if isinstance(progress, FileDone):
            self.batch.lines.append(progress.summary)
            self.status.setText(progress.summary)
            return
        if isinstance(progress, BatchProgress):
            self.status.setText(f"{progress.item + 1}/{progress.items}: {progress.name}…")
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

    def show_result(
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
        if self.mismatch:
            self.last_message += f". Note: {self.mismatch}"
        self.object_size.show_choice(result.scale)
        self.status.setText(self.last_message)
