"""Batch from the dock: every open image layer, or every image in a folder, segmented with
the Segment tab's settings in one background job (the CLI's per-file work for folders),
with progress and Cancel."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QMessageBox, QPushButton

from ...core import ModelFile, Segmenter, UserInputError
from ...core.predict.batch import FileJob, OutputsExist, folder_jobs, iter_predict_file
from ...core.predict.inference import stack_channel_axis
from ...core.predict.slice_matching import DEFAULT_MIN_IOU
from ..common import Disclosure, notify_error, notify_info
from ..layers import guess_channel_axis, layer_array
from .jobs import segment_job
from .options import MATCH_MODES


@dataclass(frozen=True)
class BatchProgress:
    """Item ``item`` of ``items`` (a layer or a file), and the progress within it."""

    item: int
    items: int
    within: Any  # the item's own progress (tiles, or slices and tiles)
    name: str

    @property
    def fraction(self) -> float:
        inner = getattr(self.within, "fraction", None)
        if inner is None:
            total = getattr(self.within, "total", 0)
            inner = self.within.done / total if total else 0.0
        return (self.item + inner) / self.items


@dataclass(frozen=True)
class LayerDone:
    """One layer's result, to be written as its Labels layer (in the GUI thread)."""

    key: Any  # what the panel needs to write it
    result: Any


@dataclass(frozen=True)
class FileDone:
    """One file segmented and written; ``summary`` says what and where."""

    summary: str


def _tagged(
    steps: Generator[Any, None, Any], item: int, items: int, name: str
) -> Generator[BatchProgress, None, Any]:
    """``steps``' progress as :class:`BatchProgress` of item ``item``; returns its result."""
    while True:
        try:
            step = next(steps)
        except StopIteration as done:
            return done.value
        yield BatchProgress(item, items, step, name)


def layers_job(
    model: ModelFile, device: str, cache: dict, items: list[tuple[Any, str, Any, dict]]
) -> Generator[Any, None, int]:
    """Segment (key, name, image, options) items one after another, yielding progress and
    each result as it is ready; returns how many were done."""
    for n, (key, name, image, options) in enumerate(items):
        steps = segment_job(model, device, cache, image, **options)
        result = yield from _tagged(steps, n, len(items), name)
        yield LayerDone(key, result)
    return len(items)


def folder_job(
    model: ModelFile,
    device: str,
    jobs: list[FileJob],
    options: dict,
    match_slices: bool,
) -> Generator[Any, None, list[str]]:
    """Segment and write each file of ``jobs`` (as ``napari-unet predict`` does); returns the
    summaries."""
    segmenter = Segmenter(model, device=device)
    summaries = []
    for n, job in enumerate(jobs):
        steps = iter_predict_file(
            segmenter, job, options, match_slices=DEFAULT_MIN_IOU if match_slices else None
        )
        summary = yield from _tagged(steps, n, len(jobs), job.path.name)
        summaries.append(summary)
        yield FileDone(summary)
    return summaries


class BatchBox(Disclosure):
    """*Batch*: every image layer, or a folder, with the Segment panel's settings, through
    the panel's job runner (its progress bar, Cancel and messages)."""

    def __init__(self, panel: Any):
        super().__init__("Batch", panel)
        self.panel = panel
        self.lines: list[str] = []  # what a folder run wrote, file by file
        self.layers_button = QPushButton("All image layers", self)
        self.layers_button.setToolTip(
            "segment every image layer open in napari with these settings, one after another"
        )
        self.folder_button = QPushButton("A folder…", self)
        self.folder_button.setToolTip(
            "segment every image in a folder with these settings and write <name>_labels.tif "
            "into a folder you choose (as `napari-unet predict FOLDER --out RESULTS`)"
        )
        row = QHBoxLayout(self.body)
        row.setContentsMargins(12, 0, 0, 0)
        row.addWidget(self.layers_button)
        row.addWidget(self.folder_button)
        self.layers_button.clicked.connect(self.segment_layers)
        self.folder_button.clicked.connect(self._folder_dialog)

    def segment_layers(self) -> Any:
        """Segment every image layer (but the probability images Segment wrote) with the
        panel's settings, one after another; returns the worker."""
        panel = self.panel
        panel.mismatch = None
        layers = [
            layer for layer in panel.image.layers() if not layer.name.endswith(" U-Net probability")
        ]
        if not layers:
            panel.last_message = notify_error(UserInputError("Open an image layer to segment."))
            return None
        try:
            model = panel.selected_model()
            items = []
            for layer in layers:
                axis = stack_channel_axis(
                    tuple(layer_array(layer).shape), model, guess_channel_axis(layer)
                )
                options = panel.run_options(layer, model, axis)
                key = (layer, axis, None, options["output"], model, panel.model.currentText())
                items.append((key, layer.name, layer_array(layer), options))
        except Exception as err:
            panel.last_message = notify_error(err)
            return None
        args = (model, panel.device.currentText(), panel.cache, items)

        def done(count: int) -> None:
            panel.last_message = notify_info(f"{count} image layer(s) segmented")
            panel.status.setText(panel.last_message)

        what = f"segmenting {len(items)} image layers"
        cancelled = "cancelled; the layers finished before got their labels"
        return panel.start_job(what, layers_job, args, {}, done, cancelled)

    def _folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Segment the images in")
        if not folder:
            return
        out = QFileDialog.getExistingDirectory(
            self, "Write the labels into", str(results_folder(Path(folder)))
        )
        if out:
            self.segment_folder(folder, out)

    def segment_folder(self, folder: str, out: str, *, overwrite: bool | None = None) -> Any:
        """Segment every image in ``folder`` and write ``<name>_labels.tif`` into ``out`` (as
        ``napari-unet predict``); results already there are replaced only if the user says
        so (``overwrite=None``: ask). Returns the worker."""
        panel = self.panel
        try:
            model = panel.selected_model()
            jobs = folder_jobs(folder, out, overwrite=bool(overwrite))
        except OutputsExist as err:
            if overwrite is not None or not self._ask_replace(err):
                panel.last_message = notify_error(err)
                return None
            return self.segment_folder(folder, out, overwrite=True)
        except Exception as err:
            panel.last_message = notify_error(err)
            return None
        options = panel.run_options(None, model, None)
        for per_layer in ("channel_axis", "index", "match_stack_dims"):
            del options[per_layer]
        match = MATCH_MODES[panel.match_slices.currentText()] == "always"
        self.lines = []
        Path(out).mkdir(parents=True, exist_ok=True)
        args = (model, panel.device.currentText(), jobs, options, match)

        def done(summaries: list[str]) -> None:
            panel.last_message = notify_info(f"{len(summaries)} file(s) segmented into {out}")
            panel.status.setText(panel.last_message)

        what = f"segmenting {len(jobs)} files"
        cancelled = f"cancelled; the files finished before were written into {out}"
        return panel.start_job(what, folder_job, args, {}, done, cancelled)

    def _ask_replace(self, err: Exception) -> bool:
        answer = QMessageBox.question(
            self, "Replace the results?", f"{err}\n\nReplace them?",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No,
        )  # fmt: skip
        return answer == QMessageBox.Yes


def results_folder(folder: Path) -> Path:
    """Where a folder's results go by default: a sibling named ``<folder>-unet``."""
    return folder.parent / f"{folder.name}-unet"
