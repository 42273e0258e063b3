"""The widget under abuse: layers deleted mid-job, the dock or the viewer closed while a worker
runs, mismatched or unsuitable layers. napari keeps working and a notification says what
happened (run under Xvfb)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch

napari = pytest.importorskip("napari")

from tests.bad_inputs import CASES  # noqa: E402
from tests.conftest import disks_image  # noqa: E402
from tests.napari.test_widget import _messages, _tiny_training, _wait  # noqa: E402


def _train_on(dock, image, labels, **kw):
    viewer = dock.viewer
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="truth")
    train = dock.train
    train.rows[0].image.select(viewer.layers["cells"])
    train.rows[0].labels.select(viewer.layers["truth"])
    _tiny_training(train, **kw)
    return train


def test_layers_deleted_while_training_do_not_stop_it(dock, qtbot):
    image, truth = disks_image()
    train = _train_on(dock, image, truth, epochs=1000, steps=5)
    worker = train.start()
    qtbot.waitUntil(lambda: len(train.history) >= 2, timeout=60_000)
    dock.viewer.layers.remove("cells")
    dock.viewer.layers.remove("truth")
    steps = len(train.history)
    qtbot.waitUntil(lambda: len(train.history) >= steps + 2, timeout=60_000)  # still learning
    train.stop()
    _wait(qtbot, train, worker)
    assert dock.session.trained is not None
    # "Segment with this model" has no image any more: a clear notification, no crash.
    assert dock.segment_with_trained(train.rows[0].image.layer()) is None
    assert "Open an image layer" in dock.segment.last_message


def test_image_deleted_while_segmenting_discards_the_result_with_a_notice(dock, qtbot):
    viewer = dock.viewer
    viewer.add_image(disks_image(shape=(512, 512), n=40)[0], name="cells")
    seg = dock.segment
    seg.image.select(viewer.layers["cells"])
    seg.model.setCurrentText("nuclei")
    worker = seg.segment()
    viewer.layers.remove("cells")
    _wait(qtbot, seg, worker)
    assert "was removed while it was segmented" in seg.last_message
    assert len(viewer.layers) == 0


def test_closing_the_dock_while_training_stops_the_worker(dock, qtbot):
    image, truth = disks_image()
    train = _train_on(dock, image, truth, epochs=1000, steps=5)
    worker = train.start()
    qtbot.waitUntil(lambda: len(train.history) >= 2, timeout=60_000)
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    dock.viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: bool(finished), timeout=30_000)
    assert dock.viewer.layers["cells"].data.shape == image.shape  # napari carries on
    dock.viewer.add_labels(truth, name="after")


def test_closing_the_viewer_while_segmenting_stops_cleanly(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    viewer.add_image(disks_image(shape=(512, 512), n=40)[0], name="cells")
    seg = dock.segment
    seg.image.select(viewer.layers["cells"])
    seg.model.setCurrentText("nuclei")
    worker = seg.segment()
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    viewer.close()
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)


def test_unsuitable_layers_become_notifications(dock, qtbot, tmp_path):
    from tests.bad_inputs import tiny_model

    viewer = dock.viewer
    seg = dock.segment
    # A colour photograph for a model trained on one-channel images (as they are, not grey).
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="rgb", rgb=True)
    seg.image.select(viewer.layers["rgb"])
    seg.add_model_file(str(tiny_model(tmp_path / "one_channel.pt")))
    _wait(qtbot, seg, seg.segment())
    assert "expects 1 input channel(s) but the image has 3" in seg.last_message
    seg.model.setCurrentText("nuclei")
    # NaNs in a float image.
    image = disks_image()[0].astype(np.float32)
    image[10:20, 10:20] = np.nan
    viewer.add_image(image, name="holes")
    seg.image.select(viewer.layers["holes"])
    _wait(qtbot, seg, seg.segment())
    assert "NaN or infinite values" in seg.last_message
    assert any("NaN" in m for m in _messages())
    # Labels that do not match the image.
    image, truth = disks_image()
    train = _train_on(dock, image, truth[:40])
    _wait(qtbot, train, train.start())
    assert "must match pixel for pixel" in train.last_message
    assert seg.run_button.isEnabled() and train.train_button.isEnabled()


def test_diverging_training_is_reported_and_keeps_a_finite_model(dock, qtbot):
    image, truth = disks_image()
    train = _train_on(dock, image, truth, epochs=3, steps=4)
    # The widget's range stops at a learning rate of 1, which a normalised net survives;
    # a user's own settings (here set directly) can go further.
    original = train.settings.config
    train.settings.config = lambda: dataclasses.replace(original(), learning_rate=1e8)
    _wait(qtbot, train, train.start())
    assert train.last_message.startswith("training diverged")
    assert train.status.text() == train.last_message  # not overwritten by "trained N steps"
    model = dock.session.trained
    assert model is not None
    assert all(torch.isfinite(v).all() for v in model.weights.values() if v.is_floating_point())
    assert train.train_button.isEnabled()


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.name.startswith("model:")], ids=lambda c: c.name
)
def test_bad_model_files_become_a_notification_on_load(dock, tmp_path, case):
    argv = case.build(tmp_path)
    seg = dock.segment
    before = seg.model.count()
    seg.add_model_file(argv[argv.index("--model") + 1])
    assert re.search(case.expect, seg.last_message), seg.last_message
    assert seg.model.count() == before  # nothing half-loaded was added


@pytest.mark.parametrize(
    "data",
    [
        np.zeros((1, 1), np.uint16),
        np.ones((1, 37), np.uint8),
        np.arange(2 * 2 * 2 * 20 * 24, dtype=np.uint16).reshape(2, 2, 2, 20, 24),
        np.full((40, 48), 2**60, np.uint64),
        np.linspace(-100, 100, 40 * 48).reshape(40, 48).astype(np.int8),
        np.eye(40, 48, dtype=bool),
        np.linspace(0, 1, 40 * 48).reshape(40, 48).astype(np.float16),
    ],
    ids=["1x1", "1xN", "5D", "uint64", "int8", "bool", "float16"],
)
def test_odd_layers_are_segmented_or_explained(dock, qtbot, data):
    viewer = dock.viewer
    viewer.add_image(data, name="odd")
    seg = dock.segment
    seg.image.select(viewer.layers["odd"])
    seg.model.setCurrentText("nuclei")
    _wait(qtbot, seg, seg.segment())
    assert "odd U-Net" in viewer.layers, seg.last_message
    assert viewer.layers["odd U-Net"].data.shape == data.shape


def _close_dock(viewer, dock, qtbot) -> None:
    """As the dock's close button does: out of the window, and its Qt widgets deleted."""
    viewer.window.remove_dock_widget(dock)
    dock.deleteLater()
    qtbot.wait(50)


def test_a_closed_and_reopened_dock_still_offers_the_trained_model(
    make_napari_viewer, qtbot, tmp_path
):
    """Closing the dock promises: 'a model trained so far stays available'."""
    from tests.bad_inputs import tiny_model

    from napari_unet.core import load_model

    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    name = dock.session.set_trained(load_model(tiny_model(tmp_path / "m.pt")), None)
    _close_dock(viewer, dock, qtbot)
    import gc

    gc.collect()  # the proxy viewer the first dock was given is gone now
    _, again = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    assert again is not dock
    assert again.session.trained is not None
    offered = [again.segment.model.itemText(i) for i in range(again.segment.model.count())]
    assert name in offered and name.startswith("new model")


def test_layers_deleted_after_the_dock_was_reopened_raise_nothing(
    make_napari_viewer, qtbot, capsys, caplog
):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    for name in ("a", "b", "c"):
        viewer.add_image(np.zeros((16, 16), np.uint8), name=name)
    _close_dock(viewer, dock, qtbot)
    _, again = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    for name in ("a", "b"):
        viewer.layers.remove(name)  # the closed dock's combos must not hear of it
        qtbot.wait(10)
    viewer.add_image(np.zeros((16, 16), np.uint8), name="d")
    viewer.layers["d"].name = "renamed"
    assert [again.segment.image.itemText(i) for i in range(again.segment.image.count())] == [
        "c",
        "renamed",
    ]
    viewer.close()
    said = capsys.readouterr().err + caplog.text
    assert "has been deleted" not in said and "Traceback" not in said, said
