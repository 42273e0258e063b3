"""The Train panel: (image, labels) layer pairs -> a U-Net, trained in a background worker.

The worker runs the core ``Trainer.train()`` generator; napari stays responsive, the panel
plots losses and the validation score as they come, Stop keeps the best model so far, Resume
continues the same run, and the trained model becomes the Segment panel's default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ...core import (
    ModelFile,
    Trainer,
    TrainProgress,
    UserInputError,
    bundled_models,
    load_model,
    save_model,
)
from ...core.train.defaults import training_defaults
from ...core.train.planner import describe_plan
from ...core.train.validation import KEPT_START
from ..common import SHORTCUTS, ActivityProgress, narrow, notify_error, start_worker
from ..layers import guess_channel_axis, layer_array, shown_block, spatial_transform
from ..session import Session
from .job import Preview, train_job, trainer_factory
from .loss_plot import LossPlot
from .model_form import NewModelForm
from .pairs import LABEL_KIND_HELP, SCRIBBLE_HELP, PairRow, add_scribble_layer
from .settings_form import TrainingSettings

NEW_MODEL = "new model"


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
        self._base_name: str | None = None  # what the current run started from
        self.activity = ActivityProgress()
        self._closed = False  # the widget was destroyed (viewer closed): callbacks do nothing

        layout = QVBoxLayout(self)
        layout.addWidget(self._data_box())
        # The CLI's defaults for a 2D model on this machine's device (core/train/defaults.py).
        defaults = training_defaults(2, "auto")
        self.start_from = narrow(QComboBox(self), 8)
        self.new_model = NewModelForm(defaults, self)
        self.settings = TrainingSettings(defaults, self)
        form = QFormLayout()
        form.addRow("start from", self.start_from)
        form.addRow(self.new_model)
        layout.addLayout(form)
        layout.addWidget(self.settings)
        layout.addLayout(self._buttons())
        self.progress = QProgressBar(self)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.plot = LossPlot(self)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.plot)
        layout.addStretch(1)
        self._connect_forms()
        self.add_row()
        session.model_changed.connect(self.refresh_start_choices)
        session.loaded_changed.connect(self.refresh_start_choices)
        session.trained_renamed.connect(self._on_renamed)
        session.used_changed.connect(self._follow_segment)
        # A dock opened again after Segment ran starts from that model.
        self.refresh_start_choices(select=session.used)
        self._set_running(False)

    def _data_box(self) -> QGroupBox:
        self.rows: list[PairRow] = []
        self.pairs_box = QVBoxLayout()
        add_pair = QPushButton("Add pair", self)
        add_pair.clicked.connect(self.add_row)
        self.scribble_button = QPushButton("New scribble layer", self)
        self.scribble_button.setToolTip(SCRIBBLE_HELP)
        self.scribble_button.clicked.connect(self.new_scribble_layer)
        box = QGroupBox("Training data", self)
        box.setToolTip(LABEL_KIND_HELP)
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(self.pairs_box)
        buttons = QHBoxLayout()
        buttons.addWidget(add_pair)
        buttons.addWidget(self.scribble_button)
        box_layout.addLayout(buttons)
        return box

    def new_scribble_layer(self) -> Any:
        """The *New scribble layer* button: an empty Labels layer over the first pair's image,
        chosen as its scribbles; returns the layer (None without an image)."""
        row = self.rows[0]
        image = row.image.layer()
        if image is None:
            self.last_message = notify_error(
                UserInputError("Open an image layer first: the scribbles are painted over it.")
            )
            return None
        layer = add_scribble_layer(self.viewer, image)
        row.labels.select(layer)
        row.mark_picked()  # chosen for the user: later predictions must not replace it
        row.kind.setCurrentText("scribbles")
        self.status.setText(
            f"paint on {layer.name!r}: label 2 on objects, label 1 on background, then Train"
        )
        return layer

    def _buttons(self) -> QGridLayout:
        self.train_button = QPushButton("Train", self)
        self.train_button.setToolTip(f"shortcut: {SHORTCUTS['Train']}")
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
        return buttons

    def _connect_forms(self) -> None:
        """What one setting changes in another."""
        # A new dimensionality or device brings its own defaults (core/train/defaults.py).
        self.new_model.dims.currentTextChanged.connect(self._apply_defaults)
        self.settings.device.currentTextChanged.connect(self._apply_defaults)
        self.start_from.currentTextChanged.connect(self._show_new_model)
        for changed in (self.start_from.currentTextChanged, self.settings.minutes.valueChanged):
            changed.connect(self._show_planned_fields)
        self.settings.plan.toggled.connect(self._show_planned_fields)
        self._show_planned_fields()

    def _show_new_model(self, text: str) -> None:
        """The new model's settings matter only when starting from scratch: open then, closed
        (and inactive) when starting from a model."""
        new = text == NEW_MODEL
        self.new_model.setEnabled(new)
        self.new_model.set_expanded(new)
        self.settings.plan.setEnabled(new)  # a fine-tune keeps its model's network

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

    def refresh_start_choices(self, select: str | None = None) -> None:
        """List what training can start from, keeping the choice (or taking ``select``)."""
        previous = self.start_from.currentText()
        current = select or previous
        self.start_from.blockSignals(True)
        self.start_from.clear()
        self.start_from.addItem(NEW_MODEL)
        if self.session.trained_name is not None:
            self.start_from.addItem(self.session.trained_name)
        self.start_from.addItems(list(bundled_models()))
        # Loaded models of our own U-Net (files and packages) are fine-tunable; others are not.
        self.start_from.addItems(
            [
                path
                for path, model in self.session.loaded.items()
                if isinstance(model, ModelFile) and path != self.session.trained_name
            ]
        )
        self.start_from.setCurrentIndex(max(self.start_from.findText(current), 0))
        self.start_from.blockSignals(False)
        if self.start_from.currentText() != previous:  # a list refreshed keeps sections as set
            self._show_new_model(self.start_from.currentText())
            self._show_planned_fields()

    def _follow_segment(self, name: str) -> None:
        """The loop: the model Segment just used is what its corrections will fine-tune."""
        if not self.busy and self.start_from.findText(name) >= 0:
            self.start_from.setCurrentText(name)

    def _on_renamed(self, old: str, new: str) -> None:
        self.refresh_start_choices(select=new if self.start_from.currentText() == old else None)

    # ------------------------------------------------------------ running

    def _base_model(self) -> ModelFile | None:
        choice = self.start_from.currentText()
        if choice == NEW_MODEL:
            return None
        if self.session.is_trained(choice):
            return self.session.trained
        if isinstance(self.session.loaded.get(choice), ModelFile):
            return self.session.loaded[choice]
        return load_model(choice)

    def _apply_defaults(self, _text: str = "") -> None:
        """Network and patch settings to the defaults for the chosen dimensions and device."""
        defaults = training_defaults(
            self.new_model.spatial_dims, self.settings.device.currentText()
        )
        self.new_model.apply_defaults(defaults)
        self.settings.apply_defaults(defaults)

    def _planning(self) -> bool:
        """Whether Train plans the network and patches (a new model with a time budget)."""
        return (
            self.settings.plan.isChecked()
            and self.settings.minutes.value() > 0
            and self.start_from.currentText() == NEW_MODEL
        )

    def _show_planned_fields(self, *_args: Any) -> None:
        """The planner sets these; greyed out while it will, so nobody edits them in vain."""
        planning = self._planning()
        for box in (
            self.new_model.depth,
            self.new_model.base,
            self.settings.patch,
            self.settings.batch,
        ):
            box.setEnabled(not planning)

    def _make_trainer_factory(self):
        """Read the panel (in the GUI thread) into a factory the worker calls."""
        rows = [
            (r.image.layer(), r.labels.layer(), r.label_mode, r.prediction_layer())
            for r in self.rows
        ]
        return trainer_factory(
            rows,
            self.settings.config(),
            self._base_model(),
            preprocessing=self.new_model.preprocessing(),
            network=self.new_model.network_settings(),
            task=self.new_model.task(),
            planning=self._planning(),
        )

    def _preview_image(self) -> np.ndarray | None:
        if (
            not self.settings.preview.isChecked()
            or not self.rows
            or self.rows[0].image.layer() is None
        ):
            return None
        layer = self.rows[0].image.layer()
        dims = self.new_model.spatial_dims
        index = shown_block(self.viewer, layer, dims, guess_channel_axis(layer))
        return np.asarray(layer_array(layer)[index])

    def start(self) -> Any:
        """Train a new run with the current settings; returns the worker."""
        self.trainer = None
        self.history = []
        self.plot.clear()
        start = self.start_from.currentText()
        self._base_name = None if start == NEW_MODEL else start
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
                self.trainer.config,
                epochs=self.trainer.config.epochs + self.settings.epochs.value(),
            )
        return self._launch(None)

    def _launch(self, factory: Any) -> Any:
        self._set_running(True)
        preparing = "preparing the training data…"
        if factory and self._planning():
            preparing = "preparing the training data and timing a few settings for the budget…"
        self.status.setText(preparing if factory else "resuming…")
        self.activity.start("U-Net: training", 1)
        # The loss plot is what to watch now: close the settings and bring it into view.
        self.new_model.set_expanded(False)
        self.settings.advanced.set_expanded(False)
        QTimer.singleShot(0, self._reveal_plot)
        # Handlers passed at creation: superqt would otherwise re-raise errors in the GUI thread.
        worker = start_worker(
            train_job,
            self.trainer,
            factory,
            self._preview_image(),
            self.settings.preview_every.value(),
            connect={
                "yielded": self._on_yield,
                "errored": self._failed,
                "finished": self._finished,
            },
        )
        self.worker = worker
        return worker

    def _reveal_plot(self) -> None:
        scroll = self.parent()
        while scroll is not None and not isinstance(scroll, QScrollArea):
            scroll = scroll.parent()
        if scroll is not None and not self._closed:
            # The closed sections' space must be gone before the plot's place is known.
            self.layout().activate()
            scroll.widget().resize(scroll.widget().width(), self.sizeHint().height())
            scroll.ensureWidgetVisible(self.plot, 0, 0)

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
        self.activity.close()

    def _on_yield(self, item: Any) -> None:
        if self._closed:
            return
        if isinstance(item, Trainer):
            self.trainer = item
            self.progress.setRange(0, item.total_steps)
            text = item.validation_summary
            if item.plan:
                # Show what was chosen where the user would have set it.
                self.new_model.depth.setValue(item.plan["depth"])
                self.new_model.base.setValue(item.plan["base_features"])
                self.settings.patch.setValue(item.plan["patch_size"])
                self.settings.batch.setValue(item.plan["batch_size"])
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
        self.activity.set(progress.step, progress.total_steps)
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
        self.activity.close()
        if self._closed:
            return
        self._set_running(False)
        failed, self._job_failed = self._job_failed, False
        if self.trainer is not None and self.trainer.state.step > 0:
            done = self._keep_trained(self.trainer)
            if not failed:  # a failure's message (e.g. divergence) stays on screen
                self.last_message = done
                self.status.setText(done)

    def _keep_trained(self, trainer: Trainer) -> str:
        """Hand the trained model to the session (selected in Segment unless it scored 0 on
        held-out data); returns what to tell the user."""
        best = trainer.state.best_score
        scored_nothing = bool(trainer.val_pairs) and best is not None and best <= 0
        # Segment needs the weights only; resuming keeps using the trainer.
        name = self.session.set_trained(
            trainer.model_file(include_training_state=False),
            self._base_name,
            selectable=not scored_nothing,
        )
        self.segment_button.setEnabled(True)
        done = f"'{name}': trained {trainer.state.step} steps"
        if best is not None and trainer.val_pairs:
            done += f", best validation {trainer.score_name} {best:.3f}"
        if trainer.kept_start:
            done += "; " + KEPT_START
        if scored_nothing:
            return done + (
                "; not selected in Segment: it found nothing right on the held-out images "
                "(train longer, or check the labels)"
            )
        return done + "; selected in Segment"

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
        if self.session.trained is not None:
            self.session.rename_trained(path)
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
