"""The Train panel: (image, labels) layer pairs -> a U-Net, trained in a background worker.

The worker runs the core ``Trainer.train()`` generator; napari stays responsive, the panel
plots losses and the validation score as they come, Stop keeps the best model so far, Resume
continues the same run, and the trained model becomes the Segment panel's default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core import (
    ImageSource,
    ModelFile,
    Preprocessing,
    TrainConfig,
    Trainer,
    TrainProgress,
    UNetConfig,
    UserInputError,
    bundled_models,
    load_model,
    predict_tiled,
    prepare_pair,
    save_model,
)
from ..core.data.normalize import model_channels
from ..core.predict.tiling import probabilities_to_labels
from ..core.train.corrections import correction_blocks
from ..core.train.defaults import training_defaults
from ..core.train.planner import describe_plan, plan_for_budget
from ..core.train.targets import annotated_blocks
from ..core.train.trainer import KEPT_START
from .common import LayerCombo, device_combo, notify_error
from .layers import (
    METADATA_KEY,
    guess_channel_axis,
    layer_array,
    shown_block,
    spatial_transform,
)
from .loss_plot import LossPlot
from .session import TRAINED, Session

NEW_MODEL = "new model"
PADDINGS = {"same": "same", "valid (the paper's)": "valid"}
MODEL_KINDS = {"instances (objects)": "instances", "semantic (classes)": "semantic"}
#: What a new model reads of each image (Preprocessing.channel_mode), as the CLI's
#: --gray / --input-channel.
INPUT_MODES = {"all channels": "as_is", "grayscale": "gray", "one channel": "single"}
#: Whether a new model turns intensities upside down (Preprocessing.invert), as --invert.
INVERT_MODES = {
    "as they are": "no",
    "inverted": "yes",
    "inverted where the background is bright": "auto",
}
LABEL_KINDS = {"dense": "dense", "scribbles": "scribbles", "strokes on a prediction": "corrections"}
LABEL_KIND_HELP = (
    "dense: every pixel is labelled (e.g. a corrected prediction); 0 = background.\n"
    "scribbles: only painted pixels count; 0 = not annotated, 1 = background, 2 = object.\n"
    "strokes on a prediction: strokes (1 = background, 2 = object) that correct the prediction\n"
    "chosen beside them, whose uncorrected rest counts as labelled: a background stroke on an\n"
    "object deletes it, an object stroke marks a missed object without drawing its outline."
)
PREDICTION_HELP = (
    "the prediction the strokes correct (a Labels layer written by Segment, edited or not);\n"
    "what no stroke corrects is accepted as it is"
)


@dataclasses.dataclass
class Preview:
    """A live prediction of the preview image, made between two training steps."""

    labels: np.ndarray
    step: int


class PairRow(QWidget):
    """One training pair: an image layer, its labels layer and the kind of labels."""

    def __init__(self, viewer: Any, parent: QWidget | None = None):
        super().__init__(parent)
        import napari

        self.image = LayerCombo(viewer, napari.layers.Image, self)
        self.labels = LayerCombo(viewer, napari.layers.Labels, self)
        self.kind = QComboBox(self)
        self.kind.addItems(LABEL_KINDS)
        self.kind.setToolTip(LABEL_KIND_HELP)
        self.prediction = LayerCombo(viewer, napari.layers.Labels, self)
        self.prediction.setToolTip(PREDICTION_HELP)
        self.prediction.setVisible(False)
        self.kind.currentIndexChanged.connect(self._show_prediction)
        self.remove = QPushButton("✕", self)
        self.remove.setToolTip("remove this pair")
        self.remove.setMaximumWidth(28)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image, 2)
        layout.addWidget(self.labels, 2)
        layout.addWidget(self.kind, 2)
        layout.addWidget(self.prediction, 2)
        layout.addWidget(self.remove)

    @property
    def label_mode(self) -> str:
        return LABEL_KINDS[self.kind.currentText()]

    def prediction_layer(self) -> Any:
        """The prediction that strokes correct; None unless the labels are corrections."""
        return self.prediction.layer() if self.label_mode == "corrections" else None

    def _show_prediction(self, *_: Any) -> None:
        corrections = self.label_mode == "corrections"
        self.prediction.setVisible(corrections)
        if corrections:
            # Offer a layer Segment wrote (other than the strokes) rather than the first one.
            written = [
                layer
                for layer in self.prediction.layers()
                if METADATA_KEY in layer.metadata and layer is not self.labels.layer()
            ]
            if written:
                self.prediction.select(written[-1])


def build_pairs(
    rows: list[tuple[Any, ...]],
    spatial_dims: int,
    preprocessing: Preprocessing,
    in_channels: int | None,
    num_classes: int,
    task: dict | None = None,
) -> list:
    """Training pairs from (image layer, labels layer, label mode[, prediction layer]) rows;
    slices of stacks that carry annotations (for corrections: strokes) become separate pairs
    for a 2D model."""
    pairs = []
    for image_layer, labels_layer, mode, *rest in rows:
        if image_layer is None or labels_layer is None:
            raise UserInputError("choose an image layer and a labels layer for every training pair")
        channel_axis = guess_channel_axis(image_layer)
        where = {"spatial_dims": spatial_dims, "channel_axis": channel_axis}
        image, labels = layer_array(image_layer), np.asarray(labels_layer.data)
        if mode == "corrections":
            prediction = _prediction_layer(labels_layer, rest[0] if rest else None).data
            blocks = correction_blocks(image, labels, prediction, **where)
        else:
            blocks = [(*block, None) for block in annotated_blocks(image, labels, **where)]
        if not blocks:
            raise UserInputError(
                f"labels layer {labels_layer.name!r} is empty: paint some labels first "
                "(scribbles: 1 = background, 2 = object)"
                if mode != "corrections"
                else f"no slice of {labels_layer.name!r} has a stroke: the slices with strokes "
                "are the ones trained on (1 = background, 2 = object)"
            )
        for index, block, block_labels, block_prediction in blocks:
            name = image_layer.name + (f" {index}" if index else "")
            pairs.append(
                prepare_pair(
                    block,
                    block_labels,
                    spatial_dims=spatial_dims,
                    preprocessing=preprocessing,
                    in_channels=in_channels,
                    num_classes=num_classes,
                    label_mode=mode,
                    channel_axis=-1 if channel_axis is not None else None,
                    name=name,
                    task=task,
                    prediction=block_prediction,
                )
            )
            in_channels = pairs[0].image.shape[0]
    return pairs


def _prediction_layer(strokes_layer: Any, prediction_layer: Any) -> Any:
    """The layer ``strokes_layer`` corrects: chosen, and not the strokes themselves."""
    if prediction_layer is None:
        raise UserInputError(
            f"labels layer {strokes_layer.name!r} holds strokes on a prediction: choose the "
            "prediction layer they correct beside it"
        )
    if prediction_layer is strokes_layer:
        raise UserInputError(
            f"{strokes_layer.name!r} is chosen as both the strokes and the prediction they "
            "correct: paint the strokes on a new Labels layer"
        )
    return prediction_layer


def train_job(trainer: Trainer | None, make_trainer: Any, preview_image: Any, preview_every: int):
    """Worker body: build the trainer (first run), then train, yielding progress and previews."""
    if trainer is None:
        trainer = make_trainer()
    yield trainer
    try:
        for progress in trainer.train():
            yield progress
            if preview_image is not None and preview_every and progress.step % preview_every == 0:
                yield Preview(_predict(trainer, preview_image), progress.step)
    finally:
        trainer.release()


def _predict(trainer: Trainer, image: np.ndarray) -> np.ndarray:
    config = trainer.net_config
    source = ImageSource(image, config.spatial_dims, trainer.preprocessing, config.in_channels)
    prob = np.zeros((config.out_channels, *source.shape), np.float32)
    for _ in predict_tiled(
        trainer.model, source, prob, device=trainer.device, halo=2 * config.size_multiple
    ):
        pass
    return probabilities_to_labels(prob)


class TrainPanel(QWidget):
    """Train or fine-tune on layers; see the module docstring."""

    #: "Segment with this model" pressed: the image layer of the first pair.
    segment_requested = Signal(object)

    def __init__(self, viewer: Any, session: Session, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.session = session
        self.trainer: Trainer | None = None
        self.worker = None
        self.last_message = ""
        self.history: list[TrainProgress] = []
        self._job_failed = False
        self._closed = False  # the widget was destroyed (viewer closed): callbacks do nothing

        self.rows: list[PairRow] = []
        self.pairs_box = QVBoxLayout()
        add_pair = QPushButton("Add pair", self)
        add_pair.clicked.connect(self.add_row)
        data_box = QGroupBox("Training data: image, labels, kind", self)
        data_box.setToolTip(LABEL_KIND_HELP)
        data_layout = QVBoxLayout(data_box)
        data_layout.addLayout(self.pairs_box)
        data_layout.addWidget(add_pair)

        self.start_from = QComboBox(self)
        self.kind = QComboBox(self)
        self.kind.addItems(list(MODEL_KINDS))
        self.kind.setToolTip(
            "instances: one label per object, touching objects split (labels must be one value per object);\n"
            "semantic: a class per pixel"
        )
        self.dims = QComboBox(self)
        self.dims.addItems(["2D", "3D"])
        # The CLI's defaults for a 2D model on this machine's device (core/train/defaults.py).
        defaults = training_defaults(2, "auto")
        self.depth = QSpinBox(self, minimum=1, maximum=6, value=defaults.depth)
        self.base = QSpinBox(self, minimum=4, maximum=128, value=defaults.base_features)
        self.classes = QSpinBox(self, minimum=2, maximum=32, value=2)
        self.padding = QComboBox(self)
        self.padding.addItems(list(PADDINGS))
        self.padding.setToolTip(
            "same: padded convolutions (default); valid: the U-Net paper's unpadded "
            "convolutions, trained on tile centres and predicted overlap-tile with mirrored "
            "borders (slower; cannot be exported to ONNX/bioimage.io)"
        )
        self.input_mode = QComboBox(self)
        self.input_mode.addItems(list(INPUT_MODES))
        self.input_mode.setToolTip(
            "which channels of the image the model reads: all of them, their grey value, or one "
            "channel only (e.g. channel 1, the green channel of RGB fundus photographs)"
        )
        self.input_channel = QSpinBox(self, minimum=0, maximum=63, value=1, prefix="channel ")
        self.input_channel.setEnabled(False)
        self.input_mode.currentTextChanged.connect(
            lambda text: self.input_channel.setEnabled(INPUT_MODES[text] == "single")
        )
        self.invert = QComboBox(self)
        self.invert.addItems(list(INVERT_MODES))
        self.invert.setToolTip(
            "intensities as they are, or upside down: 'inverted where the background is "
            "bright' lets one model read fluorescence (bright nuclei on dark) and H&E or "
            "brightfield images (dark nuclei on bright) the same way round"
        )
        input_row = QHBoxLayout()
        input_row.addWidget(self.input_mode)
        input_row.addWidget(self.input_channel)
        input_row.addWidget(self.invert)
        self.epochs = QSpinBox(self, minimum=1, maximum=100000, value=20)
        self.minutes = QDoubleSpinBox(self, minimum=0, maximum=10000, value=0, decimals=1)
        self.minutes.setSpecialValueText("no limit")
        self.plan = QCheckBox("plan network and patches for the time budget", self)
        self.plan.setChecked(True)
        self.plan.setToolTip(
            "for a new model with a time budget: time a few settings on your data and this "
            "machine first, and train the one that learns most in the budget (depth, base "
            "features, patch and batch size below are then chosen for you)"
        )
        self.steps = QSpinBox(self, minimum=1, maximum=10000, value=20)
        # Decimals first: a value set before them is rounded to the default 2 decimals (0.00).
        self.lr = QDoubleSpinBox(self, decimals=5)
        self.lr.setRange(1e-5, 1.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(1e-3)
        self.patch = QSpinBox(
            self, minimum=16, maximum=1024, singleStep=16, value=defaults.patch_size
        )
        self.batch = QSpinBox(self, minimum=1, maximum=256, value=defaults.batch_size)
        self.val_fraction = QDoubleSpinBox(self, minimum=0, maximum=0.9, value=0.2, singleStep=0.05)
        self.augment = QCheckBox("augmentation", self)
        self.augment.setChecked(True)
        # Zoom rescales each patch (core TrainConfig.zoom); 1 leaves sizes as labelled.
        self.zoom = QDoubleSpinBox(self, decimals=2, minimum=1.0, maximum=4.0, singleStep=0.1)
        self.zoom.setValue(1.0)
        self.zoom.setPrefix("zoom up to x")
        self.zoom.setToolTip(
            "rescale each training patch by a random factor between 1/zoom and zoom (1: never);"
            " try 1.5 when the objects to segment vary in size more than the labelled ones"
        )
        self.augment.toggled.connect(self.zoom.setEnabled)
        augment_row = QHBoxLayout()
        augment_row.addWidget(self.augment)
        augment_row.addWidget(self.zoom)
        self.device = device_combo(self)
        self.preview = QCheckBox("live preview every", self)
        self.preview_every = QSpinBox(self, minimum=1, maximum=10000, value=20, suffix=" steps")
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.preview)
        preview_row.addWidget(self.preview_every)

        new_box = QGroupBox("New model (when starting from scratch)", self)
        new_form = QFormLayout(new_box)
        new_form.addRow("output", self.kind)
        new_form.addRow("dimensions", self.dims)
        new_form.addRow("depth", self.depth)
        new_form.addRow("base features", self.base)
        new_form.addRow("classes", self.classes)
        new_form.addRow("padding", self.padding)
        new_form.addRow("input", input_row)
        self.kind.currentTextChanged.connect(
            lambda text: self.classes.setEnabled(MODEL_KINDS[text] == "semantic")
        )
        # A new dimensionality or device brings its own defaults (core/train/defaults.py).
        self.dims.currentTextChanged.connect(self._apply_defaults)
        self.device.currentTextChanged.connect(self._apply_defaults)
        self.classes.setEnabled(False)  # instances by default
        self.start_from.currentTextChanged.connect(
            lambda text: new_box.setEnabled(text == NEW_MODEL)
        )
        for changed in (self.start_from.currentTextChanged, self.minutes.valueChanged):
            changed.connect(self._show_planned_fields)
        self.plan.toggled.connect(self._show_planned_fields)
        form = QFormLayout()
        form.addRow("start from", self.start_from)
        form.addRow(new_box)
        form.addRow("epochs", self.epochs)
        form.addRow("time budget (min)", self.minutes)
        form.addRow("", self.plan)
        form.addRow("steps per epoch", self.steps)
        form.addRow("learning rate", self.lr)
        form.addRow("patch size", self.patch)
        form.addRow("batch size", self.batch)
        form.addRow("validation fraction", self.val_fraction)
        form.addRow("", augment_row)
        form.addRow("device", self.device)
        form.addRow(preview_row)

        self.train_button = QPushButton("Train", self)
        self.stop_button = QPushButton("Stop", self)
        self.resume_button = QPushButton("Resume", self)
        self.save_button = QPushButton("Save model…", self)
        self.segment_button = QPushButton("Segment with this model", self)
        self.segment_button.clicked.connect(
            lambda: self.segment_requested.emit(self.rows[0].image.layer())
        )
        self.train_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(self.resume)
        self.save_button.clicked.connect(self._save_dialog)
        buttons = QGridLayout()
        buttons.addWidget(self.train_button, 0, 0)
        buttons.addWidget(self.stop_button, 0, 1)
        buttons.addWidget(self.resume_button, 0, 2)
        buttons.addWidget(self.save_button, 1, 0)
        buttons.addWidget(self.segment_button, 1, 1, 1, 2)
        self.progress = QProgressBar(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.plot = LossPlot(self)

        layout = QVBoxLayout(self)
        layout.addWidget(data_box)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addStretch(1)

        self._show_planned_fields()
        self.add_row()
        session.model_changed.connect(self.refresh_start_choices)
        session.loaded_changed.connect(self.refresh_start_choices)
        self.refresh_start_choices()
        self._set_running(False)

    # ------------------------------------------------------------ data rows

    def add_row(self) -> PairRow:
        row = PairRow(self.viewer, self)
        row.remove.clicked.connect(lambda: self._remove_row(row))
        self.rows.append(row)
        self.pairs_box.addWidget(row)
        return row

    def _remove_row(self, row: PairRow) -> None:
        if len(self.rows) > 1:
            self.rows.remove(row)
            row.setParent(None)
            row.deleteLater()

    def refresh_start_choices(self) -> None:
        current = self.start_from.currentText()
        self.start_from.clear()
        self.start_from.addItem(NEW_MODEL)
        if self.session.trained is not None:
            self.start_from.addItem(TRAINED)
        self.start_from.addItems(list(bundled_models()))
        # Loaded models of our own U-Net (files and packages) are fine-tunable; others are not.
        self.start_from.addItems(
            [p for p, m in self.session.loaded.items() if isinstance(m, ModelFile)]
        )
        self.start_from.setCurrentIndex(max(self.start_from.findText(current), 0))

    # ------------------------------------------------------------ running

    def _config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs.value(),
            max_minutes=self.minutes.value() or None,
            steps_per_epoch=self.steps.value(),
            batch_size=self.batch.value(),
            patch_size=self.patch.value(),
            learning_rate=self.lr.value(),
            val_fraction=self.val_fraction.value(),
            augment=self.augment.isChecked(),
            zoom=self.zoom.value(),
            device=self.device.currentText(),
        )

    def _base_model(self) -> ModelFile | None:
        choice = self.start_from.currentText()
        if choice == NEW_MODEL:
            return None
        if choice == TRAINED:
            return self.session.trained
        if isinstance(self.session.loaded.get(choice), ModelFile):
            return self.session.loaded[choice]
        return load_model(choice)

    def _apply_defaults(self, _text: str = "") -> None:
        """Network and patch settings to the defaults for the chosen dimensions and device."""
        dims = 3 if self.dims.currentText() == "3D" else 2
        defaults = training_defaults(dims, self.device.currentText())
        self.depth.setValue(defaults.depth)
        self.base.setValue(defaults.base_features)
        self.patch.setValue(defaults.patch_size)
        self.batch.setValue(defaults.batch_size)

    def _planning(self) -> bool:
        """Whether Train plans the network and patches (a new model with a time budget)."""
        return (
            self.plan.isChecked()
            and self.minutes.value() > 0
            and self.start_from.currentText() == NEW_MODEL
        )

    def _show_planned_fields(self, *_args: Any) -> None:
        """The planner sets these; greyed out while it will, so nobody edits them in vain."""
        planning = self._planning()
        for box in (self.depth, self.base, self.patch, self.batch):
            box.setEnabled(not planning)

    def _make_trainer_factory(self):
        rows = [
            (r.image.layer(), r.labels.layer(), r.label_mode, r.prediction_layer())
            for r in self.rows
        ]
        config = self._config()
        base = self._base_model()
        dims, classes = (3 if self.dims.currentText() == "3D" else 2), self.classes.value()
        task = {"kind": MODEL_KINDS[self.kind.currentText()], "boundary_width": 2}
        if task["kind"] == "instances":
            classes = 3  # background, interior, boundary
        depth, width = self.depth.value(), self.base.value()
        planning = self._planning()
        padding = self.padding.currentText()
        preprocessing = Preprocessing(
            channel_mode=INPUT_MODES[self.input_mode.currentText()],
            channel=self.input_channel.value(),
            invert=INVERT_MODES[self.invert.currentText()],
        )

        def make() -> Trainer:
            if base is not None:
                pairs = build_pairs(
                    rows,
                    base.config.spatial_dims,
                    base.preprocessing,
                    base.config.in_channels,
                    max(2, base.config.out_channels),
                    base.task,
                )
                return Trainer(pairs, base, config)
            pairs = build_pairs(rows, dims, preprocessing, None, classes, task)
            net = UNetConfig(
                spatial_dims=dims,
                in_channels=model_channels(pairs[0].image.shape[0], preprocessing),
                out_channels=classes,
                depth=depth,
                base_features=width,
                padding=PADDINGS[padding],
            )
            plan = None
            if planning:  # in the worker thread: timing steps takes seconds
                net, train_config, plan = plan_for_budget(pairs, net, config, task=task)
            else:
                train_config = config
            return Trainer(
                pairs,
                net,
                train_config,
                preprocessing=preprocessing,
                task=task,
                plan=plan.to_dict() if plan else None,
            )

        return make

    def _preview_image(self) -> np.ndarray | None:
        if not self.preview.isChecked() or not self.rows or self.rows[0].image.layer() is None:
            return None
        layer = self.rows[0].image.layer()
        dims = 3 if self.dims.currentText() == "3D" else 2
        index = shown_block(self.viewer, layer, dims, guess_channel_axis(layer))
        return np.asarray(layer_array(layer)[index])

    def start(self) -> Any:
        """Train a new run with the current settings; returns the worker."""
        self.trainer = None
        self.history = []
        self.plot.clear()
        try:
            factory = self._make_trainer_factory()
        except Exception as err:
            self.last_message = notify_error(err)
            return None
        return self._launch(factory)

    def resume(self) -> Any:
        """Continue the stopped (or finished) run; a finished run gets the epochs set again."""
        if self.trainer is None:
            self.last_message = notify_error(UserInputError("nothing to resume: press Train first"))
            return None
        if self.trainer.state.step >= self.trainer.total_steps:
            self.trainer.config = dataclasses.replace(
                self.trainer.config, epochs=self.trainer.config.epochs + self.epochs.value()
            )
        return self._launch(None)

    def _launch(self, factory: Any) -> Any:
        from napari.qt.threading import create_worker

        self._set_running(True)
        preparing = "preparing the training data…"
        if factory and self._planning():
            preparing = "preparing the training data and timing a few settings for the budget…"
        self.status.setText(preparing if factory else "resuming…")
        # Handlers passed at creation: superqt would otherwise re-raise errors in the GUI thread.
        worker = create_worker(
            train_job,
            self.trainer,
            factory,
            self._preview_image(),
            self.preview_every.value(),
            _start_thread=True,
            _connect={
                "yielded": self._on_yield,
                "errored": self._failed,
                "finished": self._finished,
            },
        )
        self.worker = worker
        return worker

    def stop(self) -> None:
        """Stop after the current step; the best model so far is kept."""
        if self.worker is not None and self.busy:
            if not self._closed:
                self.status.setText("stopping…")
            self.worker.quit()

    def shut_down(self) -> None:
        """The widget is being destroyed: stop training and ignore its callbacks."""
        self._closed = True
        self.stop()

    def _on_yield(self, item: Any) -> None:
        if self._closed:
            return
        if isinstance(item, Trainer):
            self.trainer = item
            self.progress.setRange(0, item.total_steps)
            text = item.validation_summary
            if item.plan:
                # Show what was chosen where the user would have set it.
                self.depth.setValue(item.plan["depth"])
                self.base.setValue(item.plan["base_features"])
                self.patch.setValue(item.plan["patch_size"])
                self.batch.setValue(item.plan["batch_size"])
                text = f"planned: {describe_plan(item.plan)}; {text}"
            self.status.setText(text)
            return
        if isinstance(item, Preview):
            self._show_preview(item)
            return
        progress: TrainProgress = item
        self.history.append(progress)
        self.progress.setRange(0, progress.total_steps)
        self.progress.setValue(progress.step)
        self.plot.add("train loss", progress.step, progress.train_loss)
        text = f"epoch {progress.epoch}/{progress.epochs}, step {progress.step}, loss {progress.train_loss:.4f}"
        if progress.epoch_end:
            self.plot.add("val loss", progress.step, progress.val_loss)
            self.plot.add("val score", progress.step, progress.val_score)
        if progress.best_score is not None and self.trainer is not None and self.trainer.val_pairs:
            text += f", best validation {self.trainer.score_name} {progress.best_score:.3f}"
        self.status.setText(f"{text} ({progress.seconds:.0f} s)")

    def _show_preview(self, preview: Preview) -> None:
        layer = self.rows[0].image.layer()
        name = f"{layer.name} U-Net preview" if layer is not None else "U-Net preview"
        existing = next((lyr for lyr in self.viewer.layers if lyr.name == name), None)
        if existing is not None:
            existing.data = preview.labels
        else:
            transform = (
                spatial_transform(layer, guess_channel_axis(layer)) if layer is not None else {}
            )
            dims = preview.labels.ndim
            transform = {k: v[-dims:] for k, v in transform.items()}
            self.viewer.add_labels(preview.labels, name=name, opacity=0.5, **transform)

    def _failed(self, error: BaseException) -> None:
        if self._closed:
            return
        self.last_message = notify_error(error)
        self.status.setText(self.last_message)
        self._job_failed = True

    def _finished(self) -> None:
        self.busy = False
        if self._closed:
            return
        self._set_running(False)
        failed, self._job_failed = self._job_failed, False
        if self.trainer is not None and self.trainer.state.step > 0:
            # Segment needs the weights only; resuming keeps using self.trainer.
            self.session.set_trained(self.trainer.model_file(include_training_state=False))
            self.segment_button.setEnabled(True)
            best = self.trainer.state.best_score
            done = f"trained {self.trainer.state.step} steps"
            if best is not None and self.trainer.val_pairs:
                done += f", best validation {self.trainer.score_name} {best:.3f}"
            if self.trainer.kept_start:
                done += "; " + KEPT_START
            if not failed:  # a failure's message (e.g. divergence) stays on screen
                self.last_message = done + "; the model is selected in Segment"
                self.status.setText(self.last_message)

    def _set_running(self, running: bool) -> None:
        self.busy = running
        self.train_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(not running and self.trainer is not None)
        self.save_button.setEnabled(not running and self.trainer is not None)
        self.segment_button.setEnabled(not running and self.session.trained is not None)

    # ------------------------------------------------------------ saving

    def save_to(self, path: str) -> None:
        """Save the best model so far, with what resuming needs (atomic write)."""
        if self.trainer is None:
            raise UserInputError("nothing to save: train a model first")
        save_model(self.trainer.model_file(), path)
        self.last_message = f"model saved to {path}"
        self.status.setText(self.last_message)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save the model", "unet-model.pt", "Model files (*.pt)"
        )
        if path:
            try:
                self.save_to(path)
            except Exception as err:
                self.last_message = notify_error(err)
