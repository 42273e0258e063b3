"""The Segment tab: choose a model and an image layer, predict in the background, and write
the result as a Labels layer (and probabilities, when asked)."""

from .panel import SegmentPanel

__all__ = ["SegmentPanel"]
