"""Kept for bioimage.io packages written before 2026-11-30: their pytorch_state_dict weights
name ``napari_unet.core.model.build_unet``. The network lives in :mod:`.network.unet`; newer
packages carry it as a file of their own."""

from .network.unet import UNet, UNetConfig, build_unet

__all__ = ["UNet", "UNetConfig", "build_unet"]
