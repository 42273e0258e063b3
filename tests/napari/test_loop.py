"""The correct-and-retrain loop without hunting: names that say which model is in use, a
Segment that can be cancelled, and a Segment button that says what it needs."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from tests.conftest import disks_image  # noqa: E402
from tests.napari.test_abuse import _train_on  # noqa: E402
from tests.napari.test_widget import _wait  # noqa: E402

from napari_unet._napari.common import error_message  # noqa: E402
from napari_unet._napari.segment.panel import NO_IMAGE_HINT  # noqa: E402


def _offered(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def _train_tiny(dock, qtbot, **kw):
    image, truth = disks_image()
    train = _train_on(dock, image, truth, **kw)
    _wait(qtbot, train, train.start())
    return train


def test_segment_is_disabled_with_a_hint_until_there_is_an_image(dock):
    seg = dock.segment
    assert not seg.run_button.isEnabled() and not seg.object_size.estimate_button.isEnabled()
    assert seg.status.text() == NO_IMAGE_HINT == seg.run_button.toolTip()
    dock.viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    assert seg.run_button.isEnabled() and seg.status.text() == ""
    dock.viewer.layers.remove("img")
    assert not seg.run_button.isEnabled()


def test_messages_carry_no_exception_class_name():
    assert error_message(ValueError("the image is empty")) == "the image is empty"


def test_the_trained_model_is_named_for_its_origin_and_then_for_its_file(dock, qtbot, tmp_path):
    train = _train_tiny(dock, qtbot, epochs=1, steps=2)
    name = dock.session.trained_name
    assert name.startswith("new model") and name in _offered(dock.segment.model)
    assert dock.segment.model.currentText() == name
    assert f"'{name}'" in train.last_message
    train.start_from.setCurrentText(name)  # fine-tune it further
    path = str(tmp_path / "mine.pt")
    train.save_to(path)
    # After saving, both lists name it by its file, still selected.
    assert dock.segment.model.currentText() == path == train.start_from.currentText()
    assert name not in _offered(dock.segment.model) + _offered(train.start_from)
    # A run segmented with it records the file as its model.
    seg = dock.segment
    seg.image.select(dock.viewer.layers["cells"])
    _wait(qtbot, seg, seg.segment())
    assert dock.viewer.layers["cells U-Net"].metadata["napari_unet"]["model"] == path
    assert f"model: {path}" in seg.last_message


def test_a_model_that_scored_nothing_is_not_selected_and_the_user_is_told(dock, qtbot):
    train = _train_tiny(dock, qtbot, epochs=1, steps=2)
    dock.segment.model.setCurrentText("nuclei")
    trainer = train.trainer
    trainer.state.best_score = 0.0  # what a model that finds nothing on held-out data scores
    trainer.val_pairs = trainer.val_pairs or trainer.train_pairs[:1]
    message = train._keep_trained(trainer)
    assert "not selected in Segment" in message
    assert dock.segment.model.currentText() == "nuclei"
    assert dock.session.trained_name in _offered(dock.segment.model)  # still there to choose


def test_cancel_stops_segmenting_and_writes_nothing(dock, qtbot):
    viewer = dock.viewer
    viewer.add_image(disks_image(shape=(768, 768), n=60)[0], name="big")
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    worker = seg.segment()
    assert seg.cancel_button.isEnabled() and not seg.run_button.isEnabled()
    seg.cancel()
    _wait(qtbot, seg, worker)
    assert seg.last_message == "cancelled; nothing was written"
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert seg.run_button.isEnabled() and not seg.cancel_button.isEnabled()


def test_removing_the_image_cancels_its_segmentation_at_once(dock, qtbot):
    viewer = dock.viewer
    viewer.add_image(disks_image(shape=(768, 768), n=60)[0], name="big")
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    seg.segment()
    viewer.layers.remove("big")
    qtbot.waitUntil(lambda: not seg.busy, timeout=60_000)
    assert "segmenting stopped, nothing was written" in seg.last_message
    assert len(viewer.layers) == 0


def test_a_likely_mismatch_is_said_before_running(dock, qtbot):
    from napari.utils.notifications import notification_manager
    from skimage import data

    viewer = dock.viewer
    viewer.add_image(data.retina()[::4, ::4], name="fundus", rgb=True)
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    worker = seg.segment()
    # Said at once, before the result: a notification naming the layer.
    assert seg.mismatch and seg.mismatch.startswith("this looks like a fundus image")
    shown = [str(n.message) for n in notification_manager.records]
    assert any(m.startswith("fundus: this looks like a fundus image") for m in shown)
    _wait(qtbot, seg, worker)
    assert "Note: this looks like a fundus image" in seg.last_message
    seg.model.setCurrentText("retina")
    _wait(qtbot, seg, seg.segment())
    assert seg.mismatch is None and "Note:" not in seg.last_message


def test_a_large_image_shows_progress_as_it_goes(dock, qtbot):
    viewer = dock.viewer
    viewer.add_image(disks_image(shape=(1024, 1024), n=80)[0], name="large")
    seg = dock.segment
    seg.model.setCurrentText("nuclei")
    seg.tile_size.setValue(256)
    seg.object_size.mode.setCurrentText("native (no rescaling)")  # one pass over the tiles
    worker = seg.segment()
    seen: list[float] = []
    worker.yielded.connect(lambda step: seen.append(step.fraction))
    _wait(qtbot, seg, worker)
    assert len([f for f in seen if 0 < f < 1]) >= 4  # the bar moves before the end
    assert seen == sorted(seen)
