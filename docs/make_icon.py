"""Draw the plugin's icon (src/napari_unet/icon.png, 256 x 256): a U of the network's shape
over three segmented nuclei, in napari's dark theme colours.

    python docs/make_icon.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage import draw, io

OUT = Path(__file__).resolve().parents[1] / "src" / "napari_unet" / "icon.png"
SIZE = 256


def main() -> None:
    icon = np.zeros((SIZE, SIZE, 4), np.uint8)
    rr, cc = draw.rectangle((8, 8), (SIZE - 9, SIZE - 9))
    icon[rr, cc] = (38, 40, 49, 255)  # napari's dark background
    # The U: the encoder down the left, the decoder up the right, joined at the bottom.
    blue = (76, 161, 255, 255)
    for top, bottom, left, right in ((40, 190, 40, 84), (40, 190, 172, 216), (150, 214, 40, 216)):
        rr, cc = draw.rectangle((top, left), (bottom, right))
        icon[rr, cc] = blue
    # Nuclei inside the U, each outlined as napari draws labels.
    for (y, x), radius, colour in (
        ((70, 128), 22, (255, 179, 71, 255)),
        ((118, 112), 16, (129, 199, 132, 255)),
        ((112, 148), 12, (240, 98, 146, 255)),
    ):
        rr, cc = draw.disk((y, x), radius, shape=icon.shape[:2])
        icon[rr, cc] = colour
        rr, cc = draw.circle_perimeter(y, x, radius, shape=icon.shape[:2])
        icon[rr, cc] = (255, 255, 255, 255)
    io.imsave(OUT, icon, check_contrast=False)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
