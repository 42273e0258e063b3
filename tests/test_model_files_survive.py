"""Model files written before the core moved into its rooms (2026-11-30) load and predict the
same probabilities now: a small model file saved by that code and the bundled nuclei model,
against probabilities that code computed (tests/fixtures/before_layout.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_unet.core import Segmenter, load_model

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def before():
    return np.load(FIXTURES / "before_layout.npz")


def test_a_model_file_saved_before_loads_and_predicts_the_same(before):
    model = load_model(FIXTURES / "model_before_layout.pt")
    assert model.is_instance_model and model.description == "saved before the layout change"
    segmenter = Segmenter(model, device="cpu", precision="float32")
    now = segmenter.predict(before["image"], output="probabilities").probabilities
    np.testing.assert_allclose(now, before["tiny"], atol=1e-5)


def test_the_bundled_model_predicts_the_same(before):
    segmenter = Segmenter("nuclei", device="cpu", precision="float32")
    now = segmenter.predict(before["crop"], output="probabilities").probabilities
    np.testing.assert_allclose(now, before["nuclei"], atol=1e-5)
