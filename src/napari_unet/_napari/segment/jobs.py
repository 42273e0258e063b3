"""The Segment tab's background work: build (or reuse) the network and segment an image,
block by block, yielding progress."""

from __future__ import annotations

import dataclasses
from typing import Any

from ...core import ModelFile, Segmenter, iter_predict_stack
from ...core.predict.slice_matching import match_across_slices


def segment_job(
    model: ModelFile,
    device: str,
    cache: dict,
    image: Any,
    match_stack_dims: int = 0,
    **options: Any,
):
    """Worker body: build (or reuse) the network, then segment block by block; with
    ``match_stack_dims``, objects keep their ids along the last of that many stack axes."""
    key = (id(model), device)
    if cache.get("key") != key:
        cache.clear()
        cache.update(key=key, segmenter=Segmenter(model, device=device))
    result = yield from iter_predict_stack(cache["segmenter"], image, **options)
    if match_stack_dims:
        labels = match_across_slices(result.labels, match_stack_dims)
        result = dataclasses.replace(result, labels=labels)
    return result
