"""One door for every model a user names: a bundled model's name, a napari-unet model file,
or a bioimage.io package (folder, description file or zip).

It sits above both model files (models/) and packages (interop/), so neither imports the
other's loader: the dispatch that used to make them import each other lives here.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..models.model_file import ModelFile, bundled_models, load_model_file
from .bioimageio_import import PackageModel, load_fine_tunable, load_package
from .bioimageio_spec import is_package


def _names_a_package(spec: str | os.PathLike) -> bool:
    return not (isinstance(spec, str) and spec in bundled_models()) and is_package(spec)


def load_model(spec: str | os.PathLike) -> ModelFile:
    """A model to fine-tune or inspect: a model file, a bundled model, or a bioimage.io
    package of napari-unet's U-Net (others are refused with the reason: they can segment,
    through :func:`load_any_model`, but not be trained here)."""
    if _names_a_package(spec):
        return load_fine_tunable(spec)
    return load_model_file(spec)


def load_any_model(spec: str | Path, *, trust_code: bool = False) -> ModelFile | PackageModel:
    """A model file, a bundled model's name or any runnable bioimage.io package, ready for
    prediction (``trust_code``: allow a package whose weights need its own Python code)."""
    if _names_a_package(spec):
        return load_package(spec, trust_code=trust_code)
    return load_model_file(spec)
