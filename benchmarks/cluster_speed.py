"""One big image predicted in one process and on a local Dask cluster, side by side.

    python benchmarks/cluster_speed.py --size 3072 --block 1024

The bundled nuclei model, the nuclei sample tiled to SIZE x SIZE, float32, the same total
number of torch threads everywhere (2 by default: one process with 2 threads, ``local:1`` with
2 threads, ``local:2`` with 1 thread per worker). Times are the prediction only (the cluster
is started before, its start-up reported apart); the cluster writes into chunked OME-Zarr on
disk, the single process returns arrays in memory. Also printed: Dask's overhead per task
(no-op tasks), the writing time of one block, and each worker's peak memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=3072)
    parser.add_argument("--block", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2, help="total torch threads")
    args = parser.parse_args()

    from napari_unet.core import Segmenter
    from napari_unet.core.cluster import dask_prediction as cl
    from napari_unet.core.cluster.planning import plan_cluster_run
    from napari_unet.core.data.io import read_image
    from napari_unet.core.data.ome_zarr import read_ome_zarr
    from napari_unet.core.predict.batch import plan_jobs
    from napari_unet.samples import sample_path

    sample = read_image(sample_path("nuclei"))
    reps = [-(-args.size // n) for n in sample.shape]
    image = np.tile(sample, reps)[: args.size, : args.size]
    megapixels = image.size / 1e6
    rows = []
    torch.set_num_threads(args.threads)
    one = Segmenter("nuclei", device="cpu", precision="float32")
    one.predict(image[:512, :512])  # warm
    started = time.perf_counter()
    reference = one.predict(image, output="probabilities")
    rows.append(("semantic+prob", "one process", args.threads, time.perf_counter() - started))
    started = time.perf_counter()
    reference_objects = one.predict(image, output="instances", tile_size=args.block).labels
    rows.append(("instances", "one process", args.threads, time.perf_counter() - started))
    equal = {}
    extra = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.tif"
        tifffile.imwrite(path, image)
        for workers in (1, 2):
            threads = max(1, args.threads // workers)
            started = time.perf_counter()
            client = cl.connect(f"local:{workers}")
            startup = time.perf_counter() - started
            key = cl.ModelKey("nuclei", "cpu", "float32", threads=threads)
            # Warm: every worker loads the model (once) before the timed runs.
            client.run(lambda key=key: cl.worker_segmenter(key) and None)
            for output in ("semantic+prob", "instances"):
                out = Path(tmp) / f"{workers}-{output}"
                probabilities = output == "semantic+prob"
                jobs = plan_jobs([path], out, probabilities=probabilities)
                options = {"output": "semantic" if probabilities else "instances",
                           "keep_probabilities": probabilities, "batch_size": 4}  # fmt: skip
                run = plan_cluster_run(jobs, key, options, block_size=args.block)
                started = time.perf_counter()
                for _ in run.submit(client):
                    pass
                seconds = time.perf_counter() - started
                rows.append((output, f"--cluster local:{workers}", threads, seconds))
                labels = np.asarray(read_ome_zarr(out / "big_labels.ome.zarr").data)
                if probabilities:
                    prob = np.asarray(read_ome_zarr(out / "big_probabilities.ome.zarr").data)
                    equal[(output, workers)] = (
                        float(np.abs(prob - reference.probabilities).max()),
                        bool(np.array_equal(labels, reference.labels)),
                    )
                else:
                    equal[(output, workers)] = (
                        None,
                        bool(np.array_equal(labels, reference_objects)),
                    )
            memory = client.run(_peak_rss_mb)
            started = time.perf_counter()
            futures = client.map(lambda i: i, range(2000), pure=False)
            client.gather(futures)
            per_task = (time.perf_counter() - started) / 2000
            extra.append(
                f"local:{workers}: start-up {startup:.1f} s; Dask overhead {per_task * 1e3:.2f} ms "
                f"per no-op task; worker peak memory "
                f"{', '.join(f'{m:.0f}' for m in memory.values())} MB"
            )
            client.close()
            client.cluster.close()
        block = np.zeros((args.block, args.block), np.uint8)
        import zarr

        store = zarr.open_array(str(Path(tmp) / "w.zarr"), mode="w", shape=block.shape,
                                chunks=block.shape, dtype=np.uint8)  # fmt: skip
        started = time.perf_counter()
        store[:] = block
        extra.append(f"writing one {args.block}^2 uint8 labels chunk: "
                     f"{(time.perf_counter() - started) * 1e3:.1f} ms")  # fmt: skip

    print(f"nuclei, {args.size}x{args.size} ({megapixels:.1f} MP), blocks {args.block}, "
          f"float32, {args.threads} threads in all, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'output':14s} {'how':20s} {'thr/worker':>10s} {'seconds':>8s} {'MP/s':>6s} "
          f"{'vs one':>7s} {'max|dprob|':>10s} {'labels equal':>12s}")  # fmt: skip
    base = {r[0]: r[3] for r in rows if r[1] == "one process"}
    for output, how, threads, seconds in rows:
        workers = int(how[-1]) if how.startswith("--cluster") else None
        diff, same = equal.get((output, workers), (0.0, True))
        diff_text = "-" if diff is None else f"{diff:.1e}"
        print(f"{output:14s} {how:20s} {threads:10d} {seconds:8.2f} {megapixels / seconds:6.2f} "
              f"{seconds / base[output]:7.2f} {diff_text:>10s} {same!s:>12s}")  # fmt: skip
    for line in extra:
        print(line)


if __name__ == "__main__":
    main()
