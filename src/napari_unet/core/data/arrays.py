"""Lazy views of array-likes, so large images are read block by block, never whole.

numpy arrays, memory maps and dask arrays (which napari layers often hold) reorder their axes
lazily by themselves. Arrays that only support indexing (zarr, h5py datasets, ...) would be
loaded whole by ``np.moveaxis``; :class:`AxesView` reorders them lazily instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_array_like(obj: Any) -> bool:
    """True for objects with ``shape``, ``dtype`` and indexing: numpy, dask, zarr, h5py..."""
    return all(hasattr(obj, a) for a in ("shape", "dtype", "__getitem__"))


def _reorders_lazily(array: Any) -> bool:
    # numpy itself, and libraries that take over numpy functions (dask, cupy...).
    return isinstance(array, np.ndarray) or hasattr(array, "__array_function__")


def moveaxis(array: Any, source: int, destination: int) -> Any:
    """``np.moveaxis`` that never reads an indexing-only array whole."""
    if _reorders_lazily(array):
        return np.moveaxis(array, source, destination)
    order: list[int | None] = list(range(len(array.shape)))
    axis = order.pop(source % len(order))
    order.insert(destination % (len(order) + 1), axis)
    return AxesView(array, tuple(order))


def add_leading_axis(array: Any) -> Any:
    """``array[np.newaxis]`` that never reads an indexing-only array whole."""
    if _reorders_lazily(array):
        return array[np.newaxis]
    return AxesView(array, (None, *range(len(array.shape))))


class AxesView:
    """A lazily reordered view of an array-like that supports basic indexing.

    ``order[i]`` is the axis of ``array`` that becomes axis ``i``, or None for a new axis of
    length 1. Indexing with integers and slices reads only the requested block.
    """

    def __init__(self, array: Any, order: tuple[int | None, ...]):
        if isinstance(array, AxesView):  # flatten views of views
            order = tuple(None if o is None else array.order[o] for o in order)
            array = array.array
        self.array: Any = array
        self.order: tuple[int | None, ...] = order
        self.dtype = np.dtype(array.dtype)
        self.shape = tuple(1 if o is None else int(array.shape[o]) for o in order)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        block = self[...]
        return block if dtype is None else block.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        if len(key) > self.ndim or not all(isinstance(k, (slice, int, np.integer)) for k in key):
            raise IndexError(f"AxesView takes integers and slices only, got {key!r}")
        key = key + (slice(None),) * (self.ndim - len(key))
        base: list[Any] = [slice(None)] * len(self.array.shape)
        kept: list[int | None] = []  # the view's axes that survive, by their source axis
        for k, axis in zip(key, self.order, strict=True):
            if axis is None:
                if isinstance(k, slice):
                    kept.append(None)
                    if len(range(*k.indices(1))) != 1:
                        raise IndexError("a new axis has length 1")
                elif k not in (0, -1):
                    raise IndexError(f"index {k} is out of range for an axis of length 1")
                continue
            base[axis] = k
            if isinstance(k, slice):
                kept.append(axis)
        block = np.asarray(self.array[tuple(base)])
        # Axes of ``block``: the source axes indexed by slices, in source order.
        present = [a for a in range(len(base)) if isinstance(base[a], slice)]
        block = block.transpose([present.index(a) for a in kept if a is not None])
        for position, axis in enumerate(kept):
            if axis is None:
                block = np.expand_dims(block, position)
        return block
