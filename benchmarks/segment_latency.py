"""Click-to-layer time of the Segment button (the target: under 2 s for 1024 x 1024 on a CPU).

    xvfb-run -a python benchmarks/segment_latency.py [--size 1024] [--repeats 5]

Opens napari with the U-Net dock, adds a fluorescence-like image (the nuclei sample tiled up
to ``--size``), and presses Segment with the bundled ``nuclei`` model (instances, the default
output) repeatedly; each time is measured from the click until the Labels layer holds the
result. The first press includes loading the model and first-call set-up, so it is reported
apart.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from qtpy.QtWidgets import QApplication

import napari
from napari_unet._napari.dock import UNetWidget
from napari_unet.core import io
from napari_unet.samples import sample_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model", default="nuclei")
    args = parser.parse_args()

    viewer = napari.Viewer(show=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet-torch", "U-Net")
    assert isinstance(dock, UNetWidget)
    sample = io.read_image(sample_path("nuclei"))
    reps = (-(-args.size // sample.shape[0]), -(-args.size // sample.shape[1]))
    image = np.tile(sample, reps)[: args.size, : args.size]
    viewer.add_image(image, name="image")
    seg = dock.segment
    seg.image.select(viewer.layers["image"])
    seg.model.setCurrentText(args.model)
    app = QApplication.instance()
    times = []
    for _ in range(args.repeats + 1):
        started = time.perf_counter()
        seg.segment()
        while seg.busy:
            app.processEvents()
            time.sleep(0.001)
        times.append(time.perf_counter() - started)
    layer = viewer.layers["image U-Net"]
    print(f"{args.size}x{args.size}, model {args.model}: {seg.last_message}")
    print("| press | seconds |\n|---|---|")
    print(f"| first (loads the model) | {times[0]:.2f} |")
    later = np.array(times[1:])
    print(f"| later, median of {len(later)} | {np.median(later):.2f} |")
    print(f"| later, slowest | {later.max():.2f} |")
    print(f"objects in the layer: {int(layer.data.max())}")
    viewer.close()


if __name__ == "__main__":
    main()
