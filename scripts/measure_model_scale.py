"""Measure the scale a model was trained at and store it in the model file (for models
trained before training did it by itself, such as the bundled ones until 2026-12).

    python scripts/measure_model_scale.py src/napari_unet/models/nuclei.pt \
        --images ../shared/data/dsb2018/train/images --labels ../shared/data/dsb2018/train/labels
    python scripts/measure_model_scale.py src/napari_unet/models/retina.pt \
        --images ../shared/data/drive/training/images \
        --labels ../shared/data/drive/training/1st_manual --pattern "^\\d+"

Reads the (image, labels) pairs as training would, with the model's own preprocessing,
measures the labelled structures (core/train/scale.py: objects or widths, and the size
estimator's calibration for objects), and rewrites the file in place, atomically, keeping its
weights, precision and everything else.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from napari_unet.core import io, load_model, save_model
from napari_unet.core.train.data import prepare_pair
from napari_unet.core.train.scale import measure_training_scale


def pairs_of(model, images: Path, labels: Path, pattern: str | None) -> list:
    pairs = []
    for pair in io.find_pairs(images, labels, pattern):
        image_path, label_path = pair.image, pair.labels
        labels_array = io.read_labels(label_path)
        if not model.is_instance_model:
            labels_array = (labels_array > 0).astype("uint8")
        pairs.append(
            prepare_pair(
                io.read_image(image_path),
                labels_array,
                spatial_dims=model.config.spatial_dims,
                preprocessing=model.preprocessing,
                in_channels=model.config.in_channels,
                num_classes=max(2, model.config.out_channels),
                task=model.task,
                name=image_path.name,
            )
        )
    return pairs


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--pattern", help="match differently named files, e.g. ^\\d+ for DRIVE")
    args = parser.parse_args()
    model = load_model(args.model)
    pairs = pairs_of(model, args.images, args.labels, args.pattern)
    scale = measure_training_scale(pairs, model.task)
    if scale is None:
        raise SystemExit("nothing to measure in those labels")
    model.scale = scale
    half = any(v.dtype == torch.float16 for v in model.weights.values())
    save_model(model, args.model, half=half, include_training_state=bool(model.training_state))
    print(json.dumps({"model": str(args.model), "images": len(pairs), **scale.to_dict()}, indent=1))


if __name__ == "__main__":
    run()
