"""Models in and out of napari-unet: TorchScript and ONNX export, bioimage.io packages both
ways, and open_model(spec), which opens a model file, a bundled model or a package."""

from .open import load_any_model, load_model

__all__ = ["load_any_model", "load_model"]
