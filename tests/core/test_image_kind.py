"""Kinds of picture (core/data/image_kind.py) and the warning before a model meets images
unlike any it learnt from."""

from __future__ import annotations

import numpy as np
from skimage import data
from tests.conftest import disks_image

from napari_unet.core import (
    ModelFile,
    Preprocessing,
    TrainConfig,
    Trainer,
    UNetConfig,
    load_model,
    prepare_pair,
)
from napari_unet.core.data.image_kind import (
    image_kind,
    kinds_entry,
    mismatch_warning,
    model_image_kinds,
)


def test_kinds_of_fluorescence_brightfield_and_fundus_pictures():
    fluo = disks_image(shape=(128, 128))[0]  # bright disks on dark
    assert image_kind(fluo) == "fluorescence"
    assert image_kind(fluo.max() - fluo) == "brightfield"  # the same, dark on bright
    assert image_kind(np.stack([fluo] * 3, -1).astype(np.uint16), -1) == "fluorescence"
    assert image_kind(data.retina(), -1) == "fundus"
    assert image_kind(data.immunohistochemistry(), -1) == "brightfield"  # stained tissue
    # A (C, Z, Y, X) stack: its middle slice, channels first.
    stack = np.stack([np.moveaxis(data.retina()[::8, ::8], -1, 0)] * 5, axis=1)
    assert image_kind(stack, 0) == "fundus"


def test_a_lazy_image_is_read_by_striding_not_whole():
    class Strided:
        """An array-like that says how much of it was read."""

        def __init__(self, array):
            self.array, self.shape, self.read = array, array.shape, 0

        def __getitem__(self, index):
            out = self.array[index]
            self.read += out.size
            return out

    big = Strided(np.zeros((4, 2048, 2048), np.uint16))
    assert image_kind(big) == "fluorescence"
    assert big.read <= 256 * 256


def test_the_bundled_models_warn_on_the_others_pictures():
    nuclei, retina = load_model("nuclei"), load_model("retina")
    assert model_image_kinds(nuclei) == {"fluorescence", "brightfield"}
    assert model_image_kinds(retina) == {"fundus"}
    fundus = data.retina()
    warning = mismatch_warning(nuclei, fundus, -1)
    assert warning.startswith("this looks like a fundus image, but the model learnt from")
    assert mismatch_warning(retina, fundus, -1) is None
    assert "fluorescence image" in mismatch_warning(retina, disks_image()[0], None)
    assert mismatch_warning(nuclei, disks_image()[0], None) is None


def test_training_records_the_kinds_it_saw():
    assert kinds_entry(["fundus", "fundus", None]) == {"image_kinds": {"fundus": 2}}
    assert kinds_entry([None]) == {}
    model = ModelFile(UNetConfig(depth=2, base_features=4), Preprocessing(), {})
    assert model_image_kinds(model) is None  # unknown: no warning
    assert mismatch_warning(model, data.retina(), -1) is None
    model.history = {"runs": [{"image_kinds": {"brightfield": 3}}]}
    assert model_image_kinds(model) == {"brightfield"}


def test_a_trained_model_file_carries_its_kinds():
    image, labels = disks_image(shape=(64, 64))
    pair = prepare_pair(image, labels, spatial_dims=2, preprocessing=Preprocessing())
    assert pair.kind == "fluorescence"
    config = TrainConfig(epochs=1, steps_per_epoch=1, batch_size=1, patch_size=32, val_fraction=0)
    trainer = Trainer([pair], UNetConfig(depth=2, base_features=4), config)
    for _ in trainer.train():
        pass
    assert model_image_kinds(trainer.model_file()) == {"fluorescence"}
