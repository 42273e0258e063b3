"""How responsive napari stays while the dock segments and trains (the target: no Qt
event-loop pause longer than 100 ms, outside napari's own insertion of the result layer).

    xvfb-run -a python benchmarks/gui_responsiveness.py [--steps 60]

A 5 ms QTimer runs in the GUI thread and records the gaps between its ticks, in situations
side by side: napari idle; the Segment panel segmenting a 2048 x 2048 image (the nuclei sample
tiled) with the bundled model, pauses while napari adds the Labels layer counted apart; the
Train panel training a small U-Net (depth 4, 16 base features, 8 patches of 128 x 128 per
step, on the nuclei sample) in its background worker; and the same training run directly in
the GUI thread, as a plugin without a worker would do.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from qtpy.QtCore import QSettings, QTimer
from qtpy.QtWidgets import QApplication

import napari


class GapRecorder:
    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.timer = QTimer()
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        self.times.append(now - self.t0)
        self.last = now

    def start(self) -> None:
        self.gaps.clear()
        self.times: list[float] = []
        self.last = self.t0 = time.perf_counter()
        self.timer.start(5)

    def stop(self) -> np.ndarray:
        self.timer.stop()
        if self.gaps:
            worst = int(np.argmax(self.gaps))
            self.worst_at = self.times[worst]
        return np.array(self.gaps) * 1000


class NapariWork:
    """When napari itself works in the GUI thread on our behalf: adding a result layer,
    adding a bar to its activity dock. Pauses inside these are napari's, counted apart."""

    def __init__(self, recorder: GapRecorder) -> None:
        self.recorder = recorder
        self.windows: list[tuple[float, float]] = []

    def wrap(self, owner, name: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter() - self.recorder.t0
            try:
                return inner(*args, **kwargs)
            finally:
                self.windows.append((start, time.perf_counter() - self.recorder.t0))

        setattr(owner, name, timed)

    def split(self, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ours, napari's): a gap ending at t lasted from t - gap to t."""
        times = np.array(self.recorder.times)
        napari_side = np.zeros(len(gaps), bool)
        for start, end in self.windows:
            napari_side |= (times >= start) & (times - gaps / 1000 <= end)
        self.windows.clear()
        return gaps[~napari_side], gaps[napari_side]


def wait_idle(panel) -> None:
    """Keep the event loop turning until the panel's job has finished."""
    while panel.busy:
        QApplication.processEvents()
        time.sleep(0.001)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.001)


def configure(train, steps: int) -> None:
    train.start_from.setCurrentText("new model")
    train.new_model.depth.setValue(4)
    train.new_model.base.setValue(16)
    train.settings.epochs.setValue(1)
    train.settings.steps.setValue(steps)
    train.settings.patch.setValue(128)
    train.settings.batch.setValue(8)
    train.settings.val_fraction.setValue(0)


def segment_rows(viewer, dock, recorder, napari_work) -> list:
    """Segment a 2048 x 2048 image: the pauses while the worker runs, and those while napari
    adds the result layer or its activity bar, apart."""
    sample = np.asarray(viewer.layers["nuclei"].data)
    viewer.add_image(np.tile(sample, (4, 3))[:2048, :2048], name="big")
    seg = dock.segment
    seg.image.select(viewer.layers["big"])
    seg.model.setCurrentText("nuclei")
    napari_work.wrap(seg, "show_result")
    recorder.start()
    started = time.perf_counter()
    seg.segment()
    wait_idle(seg)
    seconds = time.perf_counter() - started
    ours, napari_side = napari_work.split(recorder.stop())
    print(f"segmenting: {seg.last_message}")
    return [
        ("Segment panel (worker)", ours, seconds, 0),
        ("  napari adding layer, bar", napari_side, 0, 0),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    # The dock's defaults, not this machine's remembered settings.
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, tempfile.mkdtemp())
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-unet-torch", "nuclei")
    recorder = GapRecorder()
    napari_work = NapariWork(recorder)
    from napari_unet._napari.common import ActivityProgress

    napari_work.wrap(ActivityProgress, "_create")
    rows = []
    recorder.start()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    spin(4.0)  # the dock warms torch up in a background thread meanwhile
    rows.append(("opening the dock (+4 s)", recorder.stop(), 4.0, 0))
    train = dock.train
    train.rows[0].image.select(viewer.layers["nuclei"])
    train.rows[0].labels.select(viewer.layers["nuclei ground truth"])
    configure(train, args.steps)

    recorder.start()
    spin(3.0)
    rows.append(("idle napari", recorder.stop(), 3.0, 0))

    rows += segment_rows(viewer, dock, recorder, napari_work)

    recorder.start()
    started = time.perf_counter()
    train.start()
    wait_idle(train)
    if train.trainer is None:
        raise SystemExit(f"training did not run: {train.last_message}")
    ours, napari_side = napari_work.split(recorder.stop())
    seconds = time.perf_counter() - started
    rows.append(("Train panel (worker)", ours, seconds, train.trainer.state.step))
    rows.append(("  napari adding its bar", napari_side, 0, 0))
    long_pauses = [
        (round(t, 2), round(g * 1000))
        for t, g in zip(recorder.times, recorder.gaps, strict=True)
        if g > 0.1
    ]

    # The same work in the GUI thread: the timer cannot tick while a step runs.
    trainer = train._make_trainer_factory()()
    recorder.start()
    started = time.perf_counter()
    for _progress in trainer.train():
        QApplication.processEvents()
    rows.append(
        (
            "same training, GUI thread",
            recorder.stop(),
            time.perf_counter() - started,
            trainer.state.step,
        )
    )
    viewer.close()

    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps} steps of 8 x 128^2 patches"
    )
    print(
        f"{'situation':<28} {'steps':>5} {'seconds':>8} {'ticks':>6} {'median ms':>10} {'p99 ms':>8} {'max gap ms':>11}"
    )
    for name, gaps, seconds, steps in rows:
        if not len(gaps):  # e.g. a layer added between two ticks
            print(f"{name:<28} {steps:>5} {seconds:>8.1f} {0:>6} {'-':>10} {'-':>8} {'-':>11}")
            continue
        print(
            f"{name:<28} {steps:>5} {seconds:>8.1f} {len(gaps):>6} {np.median(gaps):>10.1f} "
            f"{np.percentile(gaps, 99):>8.1f} {gaps.max():>11.1f}"
        )
    print(f"worker run, pauses over 100 ms as (seconds after Train, ms): {long_pauses}")


if __name__ == "__main__":
    main()
