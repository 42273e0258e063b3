"""Record in a model file the kinds of image it was trained on (core/data/image_kind.py), for
models trained before training recorded them itself, such as the bundled ones until 2026-12.
Weights and everything else in the file stay as they are.

    python scripts/record_image_kinds.py src/napari_unet/models/nuclei.pt \\
        ../shared/data/dsb2018/train/images
    python scripts/record_image_kinds.py src/napari_unet/models/retina.pt \\
        ../shared/data/drive/training/images
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from napari_unet.core import io, load_model, save_model
from napari_unet.core.data.image_kind import image_kind, kinds_entry


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path, help="the folder of the images it was trained on")
    args = parser.parse_args()
    model = load_model(args.model)
    kinds = []
    for path in io.list_images([args.images]):
        image = io.read_image(path)
        colour = -1 if image.ndim == 3 and image.shape[-1] in (3, 4) else None
        kinds.append(image_kind(image, colour))
    model.history = {**model.history, **kinds_entry(kinds)}
    half = any(v.dtype == torch.float16 for v in model.weights.values())
    save_model(model, args.model, half=half, include_training_state=bool(model.training_state))
    print(json.dumps({"model": str(args.model), **kinds_entry(kinds)}))


if __name__ == "__main__":
    run()
