"""How the tiler runs someone else's bioimage.io network: its halo, the window sizes it
accepts, and no activation (its own postprocessing already ran)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import UserInputError
from ..interop.bioimageio_import import PackageModel
from .tiling import _round_up, default_tile_size


def _unchanged(output: torch.Tensor) -> torch.Tensor:
    return output


def package_tiling(
    model: PackageModel,
    shape: tuple[int, ...],
    tile_size: int | tuple[int, ...] | None,
    halo: int | str | tuple[int, ...],
) -> dict[str, Any]:
    """Tiler settings for a package: its halo, windows of sizes it accepts, and no activation
    (its postprocessing already ran)."""
    dims = model.config.spatial_dims
    multiple = model.config.size_multiple
    if isinstance(halo, str):
        if halo not in ("auto", "exact"):
            raise UserInputError(
                f"halo must be 'exact', 'auto' or a number of pixels, got {halo!r}"
            )
        halos = model.halo
    else:
        halos = (int(halo),) * dims if isinstance(halo, (int, np.integer)) else tuple(halo)
    if tile_size is None:
        cores = default_tile_size(shape, halos, multiple)
    else:
        cores = (tile_size,) * dims if isinstance(tile_size, int) else tuple(tile_size)
    fitted = []
    for core, h in zip(cores, halos, strict=True):
        smallest = model.minimum - 2 * _round_up(h, multiple)
        if smallest < 1:
            smallest = multiple
        fitted.append(smallest if model.step == 0 else max(core, smallest))
    return {"halo": halos, "tile_size": tuple(fitted), "finish": _unchanged}
