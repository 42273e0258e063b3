"""Remake docs/images/scale.png: the same nuclei at two magnifications, segmented by the
bundled model on the image's own grid and with the object size found automatically.

    python docs/make_scale_figure.py

Uses the nuclei sample shipped with the package (a DSB2018 excerpt, CC0): a 96 x 96 crop
as it is, and the same crop enlarged five times (as a 5x stronger objective would show it).
Each panel shows the predicted objects' outlines; the caption line under the figure in
docs/cli.md quotes the sizes this script prints.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage import io as skio
from skimage.segmentation import find_boundaries

from napari_unet.core import Segmenter, io
from napari_unet.samples import sample_path

OUT = Path(__file__).resolve().parent / "images" / "scale.png"
PANEL = 384


def panel(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Grey image with yellow outlines, resized to PANEL x PANEL (nearest)."""
    grey = image.astype(np.float32)
    grey = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[find_boundaries(labels, mode="inner")] = (1.0, 0.85, 0.0)
    zoom = (PANEL / rgb.shape[0], PANEL / rgb.shape[1], 1)
    return (ndi.zoom(rgb, zoom, order=0) * 255).astype(np.uint8)


def main() -> None:
    image = io.read_image(sample_path("nuclei"))
    crop = image[216:312, 316:412]
    large = ndi.zoom(crop.astype(np.float32), 5, order=1)
    segmenter = Segmenter("nuclei", device="cpu")
    small = segmenter.predict(crop, output="instances")
    native = segmenter.predict(large, output="instances", object_size="native")
    auto = segmenter.predict(large, output="instances")
    for name, result in (("1x, auto", small), ("5x, native", native), ("5x, auto", auto)):
        print(f"{name}: {int(result.labels.max())} objects; {result.scale.describe()}")
    gap = np.full((PANEL, 8, 3), 255, np.uint8)
    figure = np.concatenate(
        [
            panel(crop, small.labels),
            gap,
            panel(large, native.labels),
            gap,
            panel(large, auto.labels),
        ],
        axis=1,
    )
    OUT.parent.mkdir(exist_ok=True)
    skio.imsave(OUT, figure, check_contrast=False)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
