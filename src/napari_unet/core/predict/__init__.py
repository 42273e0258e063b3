"""Prediction: the exact tiler, block-wise instances and stitching, the Segmenter
(probabilities -> semantic or instance labels), test-time augmentation, per-file work."""

from .inference import Prediction, Segmenter, StackProgress, instances_from_foreground
from .tiling import TileProgress, predict_tiled

__all__ = [
    "Prediction",
    "Segmenter",
    "StackProgress",
    "TileProgress",
    "instances_from_foreground",
    "predict_tiled",
]
