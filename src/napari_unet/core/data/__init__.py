"""Images and labels in and out (TIFF, PNG, zarr, OME-Zarr), lazy arrays, normalisation, and
where a command may write (safe_paths). Uses only the errors and limits below it."""

from . import io
from .normalize import ImageSource, Preprocessing

__all__ = ["ImageSource", "Preprocessing", "io"]
