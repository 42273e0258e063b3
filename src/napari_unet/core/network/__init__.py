"""The network: the U-Net (2D/3D, same or valid padding, MobileNetV2 encoder option), its
configuration, and the devices and precisions it runs on. Imports nothing above it."""

from .devices import available_devices, resolve_device
from .unet import UNet, UNetConfig, activation, receptive_radius

__all__ = [
    "UNet",
    "UNetConfig",
    "activation",
    "available_devices",
    "receptive_radius",
    "resolve_device",
]
