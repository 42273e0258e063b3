"""How often core/data/image_kind.py names the kind of the shared data's images right: DSB2018
train and val by the kinds in their meta.json (fluo, color = H&E, bright_gray = brightfield),
DRIVE's fundus photographs and scikit-image's retina.

    python benchmarks/image_kinds.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

from napari_unet.core import io
from napari_unet.core.data.image_kind import image_kind

EXPECTED = {"fluo": "fluorescence", "color": "brightfield", "bright_gray": "brightfield"}


def _kinds(data: Path):
    for split in ("train", "val"):
        for item in json.loads((data / "dsb2018" / split / "meta.json").read_text()):
            path = data / "dsb2018" / split / "images" / f"{item['id']}.png"
            yield f"DSB2018 {item['kind']}", path, EXPECTED[item["kind"]]
    for path in sorted((data / "drive" / "training" / "images").glob("*.tif")):
        yield "DRIVE fundus", path, "fundus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=Path(__file__).resolve().parents[2] / "shared" / "data")
    data = Path(parser.parse_args().data)
    table: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for group, path, _ in _kinds(data):
        image = io.read_image(path)
        colour = -1 if image.ndim == 3 and image.shape[-1] in (3, 4) else None
        table[group][image_kind(image, colour)] += 1
    from skimage import data as skdata

    table["scikit-image retina (fundus)"][image_kind(skdata.retina(), -1)] += 1
    expected = {g: e for g, _, e in _kinds(data)} | {"scikit-image retina (fundus)": "fundus"}
    print("| images | n | named right | named otherwise |")
    print("|---|---|---|---|")
    for group, counts in table.items():
        n = sum(counts.values())
        right = counts[expected[group]]
        other = ", ".join(f"{k} {v}" for k, v in counts.items() if k != expected[group]) or "-"
        print(f"| {group} | {n} | {right} ({right / n:.0%}) | {other} |")


if __name__ == "__main__":
    main()
