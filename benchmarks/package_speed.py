"""bioimage.io packages through napari-unet against bioimage.io's own runner.

    python benchmarks/package_speed.py --size 2048 --threads 2

The bundled nuclei model is exported as a package (`napari-unet export --format bioimageio`),
then the same raw image (a tiled copy of the nuclei sample) is segmented four ways, warm (best
of --repeats after an untimed call), in float32:

- *ours, model file*: `Segmenter("nuclei")`, as `napari-unet predict` runs it;
- *ours, package as ours*: the package loaded back (our U-Net: the same model file);
- *ours, package as foreign*: its torchscript weights and the spec's steps through our tiler,
  as any other package runs;
- *bioimageio.core*: `bioimageio.core.predict` on the whole image (the reference runner).

Differences are the largest absolute difference of the probabilities from the first row, over
the whole image and away from its borders (beyond the package's halo). bioimageio.core pads the
image by the halo (mirrored) before normalising it, so its percentiles, and every probability,
move a little; and the border pixels see mirrored rather than reflected context.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _best(run, repeats: int) -> tuple[float, np.ndarray]:
    result = run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def _diffs(prob: np.ndarray, reference: np.ndarray, halo: int) -> tuple[float, float]:
    """Largest |difference| over the whole image and beyond ``halo`` pixels of its borders."""
    diff = np.abs(prob - reference)
    return float(diff.max()), float(diff[:, halo:-halo, halo:-halo].max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import bioimageio.core

    from napari_unet.core import Segmenter, load_model
    from napari_unet.core.data.io import read_image
    from napari_unet.core.interop.bioimageio_export import export_package, package_sizes
    from napari_unet.core.interop.bioimageio_import import PackageModel
    from napari_unet.core.interop.bioimageio_spec import open_package
    from napari_unet.samples import sample_path

    sample = read_image(sample_path("nuclei"))
    reps = [-(-args.size // n) for n in sample.shape]
    image = np.tile(sample, reps)[: args.size, : args.size]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_package(load_model("nuclei"), Path(tmp) / "nuclei.zip", name="nuclei")
        runs = {
            "ours, model file": Segmenter("nuclei", device="cpu", precision="float32"),
            "ours, package as ours": Segmenter(load_model(path), device="cpu", precision="float32"),
            "ours, package as foreign": Segmenter(PackageModel(open_package(path)), device="cpu"),
        }
        _, _, halo = package_sizes(load_model("nuclei"))
        rows = []
        reference = None
        for name, seg in runs.items():
            seconds, prob = _best(
                lambda seg=seg: seg.predict(image, output="probabilities").probabilities,
                args.repeats,
            )
            reference = prob if reference is None else reference
            rows.append((name, seconds, *_diffs(prob, reference, halo)))

        def reference_runner():
            out = bioimageio.core.predict(
                model=path, inputs={"raw": image[None, None].astype(np.float32)}
            )
            (tensor,) = out.members.values()
            return np.asarray(tensor.data)[0]

        seconds, prob = _best(reference_runner, args.repeats)
        rows.append(("bioimageio.core", seconds, *_diffs(prob, reference, halo)))
    megapixels = image.size / 1e6
    print(f"nuclei package, {args.size}x{args.size} image, {args.threads} threads, float32")
    print(f"{'method':28s} {'seconds':>8s} {'MP/s':>6s} {'max |diff|':>11s} {'inside':>8s}")
    for name, seconds, diff, inner in rows:
        print(f"{name:28s} {seconds:8.2f} {megapixels / seconds:6.2f} {diff:11.1e} {inner:8.1e}")


if __name__ == "__main__":
    main()
