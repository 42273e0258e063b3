"""Device and precision choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core import ImageSource, Preprocessing, UNet, UNetConfig, predict_tiled
from napari_unet.core.errors import UserInputError
from napari_unet.core.network.devices import (
    PRECISION_ENV,
    autocast_dtype,
    cpu_has_fast_bfloat16,
    memory_format,
    resolve_device,
    slow_precision_note,
)


def test_cpu_auto_precision_is_bfloat16_only_with_amx(monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    cpu = torch.device("cpu")
    expected = torch.bfloat16 if cpu_has_fast_bfloat16() else None
    assert autocast_dtype(cpu, "auto") is expected
    assert autocast_dtype(cpu, "float32") is None
    with pytest.raises(UserInputError, match="precision must be one of"):
        autocast_dtype(cpu, "double")


def test_environment_variable_says_what_auto_means(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setenv(PRECISION_ENV, "bfloat16")
    assert autocast_dtype(cpu, "auto") is torch.bfloat16
    assert autocast_dtype(cpu, "float32") is None  # an explicit choice still wins
    monkeypatch.setenv(PRECISION_ENV, "float32")
    assert autocast_dtype(cpu, "auto") is None
    monkeypatch.setenv(PRECISION_ENV, "fp8")
    with pytest.raises(UserInputError, match=f"{PRECISION_ENV}='fp8' is not a precision"):
        autocast_dtype(cpu, "auto")


def test_forced_bfloat16_on_a_cpu_without_amx_is_called_slow(monkeypatch):
    from napari_unet.core.network import devices

    monkeypatch.delenv(PRECISION_ENV, raising=False)
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: False)
    note = slow_precision_note(cpu, "bfloat16")
    assert note is not None and "bfloat16 is emulated" in note and PRECISION_ENV in note
    assert slow_precision_note(cpu, "float32") is None
    assert slow_precision_note(cpu, "auto") is None  # auto is float32 there
    monkeypatch.setenv(PRECISION_ENV, "float16")  # the variable forces it too
    assert "float16 is emulated" in slow_precision_note(cpu, "auto")
    monkeypatch.setattr(devices, "cpu_has_fast_bfloat16", lambda: True)
    monkeypatch.setenv(PRECISION_ENV, "bfloat16")
    assert slow_precision_note(cpu, "auto") is None  # AMX runs it natively


def test_channels_last_for_2d_only():
    cpu = torch.device("cpu")
    assert memory_format(cpu, 2) is torch.channels_last
    assert memory_format(cpu, 3) is torch.contiguous_format


def test_unknown_device_names_what_is_available():
    with pytest.raises(UserInputError, match=r"available: .*cpu"):
        resolve_device("cuda:7")


def test_bfloat16_prediction_stays_close_to_float32():
    torch.manual_seed(0)
    net = UNet(UNetConfig(depth=2, base_features=8))
    image = np.random.default_rng(0).random((96, 80)).astype(np.float32)
    source = ImageSource(image, 2, Preprocessing(), 1)
    exact = np.zeros((2, 96, 80), np.float32)
    reduced = np.zeros_like(exact)
    list(predict_tiled(net, source, exact, tile_size=64, precision="float32"))
    list(predict_tiled(net, source, reduced, tile_size=64, precision="bfloat16"))
    assert np.allclose(exact.sum(0), 1, atol=1e-5) and np.allclose(reduced.sum(0), 1, atol=1e-2)
    assert np.abs(exact - reduced).max() < 0.05
