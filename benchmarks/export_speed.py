"""Exported networks against our predictor: the same model and image, CPU, one process.

    python benchmarks/export_speed.py --size 1024 --threads 2

Every method gets the same normalised 1024 x 1024 input (a tiled copy of the nuclei sample)
in one window, warm (best of --repeats after an untimed call); *ours* is `predict_tiled` as
the plugin runs it (precision "auto"), *ours float32* the exact mode; *onnxruntime* and
*TorchScript* run the files `napari-unet export` writes. Differences are the largest absolute
difference of the probabilities from *ours float32*.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import onnxruntime as ort

    from napari_unet.core import ImageSource, load_model, predict_tiled
    from napari_unet.core.data.io import read_image
    from napari_unet.core.interop.network_export import export_network
    from napari_unet.core.network.devices import autocast_dtype
    from napari_unet.core.network.fold import fold_batchnorm
    from napari_unet.samples import sample_path

    model = load_model(args.model)
    sample = read_image(sample_path("nuclei"))
    reps = [-(-args.size // n) for n in sample.shape]
    image = np.tile(sample, reps)[: args.size, : args.size]
    config = model.config
    source = ImageSource(image, config.spatial_dims, model.preprocessing, config.in_channels)
    x = source.read((slice(None), slice(None)))[None]
    net = fold_batchnorm(model.build())

    def ours(precision):
        def run():
            out = np.zeros((config.out_channels, *source.shape), np.float32)
            list(predict_tiled(net, source, out, precision=precision))
            return out

        return run

    rows = []
    auto = autocast_dtype(torch.device("cpu"), "auto")
    for name, precision in ((f"ours (auto = {auto or 'float32'})", "auto"),
                            ("ours float32", "float32")):  # fmt: skip
        rows.append((name, *_best(ours(precision), args.repeats)))
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_network(model, Path(tmp) / "net.onnx", "onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        rows.append(
            (
                "onnxruntime (float32)",
                *_best(lambda: session.run(None, {"x": x})[0][0], args.repeats),
            )
        )
        scripted = torch.jit.load(str(export_network(model, Path(tmp) / "net.pt", "torchscript")))
        tensor = torch.from_numpy(x)

        def torchscript():
            with torch.no_grad():
                return scripted(tensor)[0].numpy()

        rows.append(("TorchScript (float32)", *_best(torchscript, args.repeats)))
    reference = rows[1][2]
    megapixels = args.size**2 / 1e6
    cpu = "AMX" if auto is not None else "no AMX"
    print(
        f"model {args.model}, {args.size}^2, {args.threads} threads, CPU {cpu}, torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print("| method | seconds | MP/s | max abs diff |\n|---|---:|---:|---:|")
    for name, seconds, result in rows:
        print(
            f"| {name} | {seconds:.3f} | {megapixels / seconds:.2f} | {np.abs(result - reference).max():.1e} |"
        )


if __name__ == "__main__":
    main()
