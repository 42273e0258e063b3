"""Large inputs: time and peak memory of ``napari-unet predict`` on a slide and a big stack.

    python benchmarks/large_inputs.py                          # all cases, 16k^2 and 128x1024^2
    python benchmarks/large_inputs.py --cases 2d-tiff --size 4096   # a quick look

Each case runs the real command line (``napari_unet.cli.main``) in a fresh process, which
reports its own peak resident memory (``VmHWM``: file pages of a memory-mapped input that
were read count too) and its memory right after importing torch and the plugin. Cases:

- ``2d-tiff``: a 16384 x 16384 uint16 fluorescence image (the bundled nuclei sample mirrored
  over the plane, so the model finds real objects), an uncompressed TIFF that the CLI maps
  into memory; the bundled ``nuclei`` model, ``--output instances``: uint32 object labels,
  segmented block by block (:mod:`napari_unet.core.predict.stitching`).
- ``2d-zarr``: the same image as a zarr array (1024^2 chunks, compressed), read chunk by
  chunk; semantic labels (uint8). Needs ``pip install zarr``.
- ``3d-tiff``: a 128 x 1024 x 1024 uint16 stack (memory-mapped TIFF) through a 3D U-Net
  (depth 3, base 16; random weights, as speed and memory do not depend on them), semantic
  labels (uint8).

The budget column is the issue's target: input + output + 1 GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _memory import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
CASES = ("2d-tiff", "2d-zarr", "3d-tiff")
GB = 2**30


def _nuclei_rows(rows: slice, width: int) -> np.ndarray:
    """Rows of an endless mirror tiling of the bundled nuclei sample, as uint16."""
    from napari_unet.core import io

    sample = io.read_image(ROOT / "src/napari_unet/samples/nuclei.png").astype(np.uint16) * 257
    tile = np.block([[sample, sample[:, ::-1]], [sample[::-1], sample[::-1, ::-1]]])
    y = np.arange(rows.start, rows.stop) % tile.shape[0]
    x = np.arange(width) % tile.shape[1]
    return tile[np.ix_(y, x)]


def make_2d_tiff(path: Path, size: int) -> None:
    import tifffile

    image = tifffile.memmap(path, shape=(size, size), dtype=np.uint16)
    for start in range(0, size, 1024):
        rows = slice(start, min(size, start + 1024))
        image[rows] = _nuclei_rows(rows, size)
    image.flush()
    del image


def make_2d_zarr(path: Path, size: int) -> None:
    import zarr

    image = zarr.create_array(path, shape=(size, size), chunks=(1024, 1024), dtype=np.uint16)
    for start in range(0, size, 1024):
        rows = slice(start, min(size, start + 1024))
        image[rows] = _nuclei_rows(rows, size)


def make_3d_tiff(path: Path, shape: tuple[int, int, int]) -> None:
    import tifffile

    stack = tifffile.memmap(path, shape=shape, dtype=np.uint16)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    for z in range(shape[0]):
        blobs = np.sin(xx / 9.0 + z / 7.0) * np.cos(yy / 11.0 - z / 5.0)
        stack[z] = (20000 + 15000 * blobs + rng.normal(0, 2000, blobs.shape)).astype(np.uint16)
    stack.flush()
    del stack


def make_3d_model(path: Path) -> None:
    from napari_unet.core import ModelFile, Preprocessing, UNet, UNetConfig, save_model

    config = UNetConfig(spatial_dims=3, depth=3, base_features=16)
    save_model(ModelFile(config, Preprocessing(), UNet(config).state_dict()), path)


def child(argv: list[str]) -> None:
    """Run the CLI with ``argv`` and print time and memory as one JSON line."""
    import torch

    import napari_unet.cli as cli
    import napari_unet.core  # noqa: F401  (the plugin's imports count as runtime)

    torch.set_num_threads(torch.get_num_threads())
    runtime = peak_rss_mb()
    started = time.perf_counter()
    status = cli.main(argv)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"status": status, "seconds": seconds, "peak_mb": peak_rss_mb(), "runtime_mb": runtime}
        )
    )


def run_case(case: str, work: Path, size: int, stack: tuple[int, int, int]) -> dict:
    out = work / f"out-{case}"
    if case == "2d-tiff":
        image = work / f"slide-{size}.tif"
        if not image.exists():
            make_2d_tiff(image, size)
        argv = ["predict", str(image), "--model", "nuclei", "--output", "instances"]
        in_bytes, out_bytes, pixels = size * size * 2, size * size * 4, size * size
        what = f"{size}x{size} uint16 TIFF (mapped), nuclei, instances (uint32)"
    elif case == "2d-zarr":
        image = work / f"slide-{size}.zarr"
        if not image.exists():
            make_2d_zarr(image, size)
        argv = ["predict", str(image), "--model", "nuclei"]
        in_bytes, out_bytes, pixels = size * size * 2, size * size, size * size
        what = f"{size}x{size} uint16 zarr, nuclei, semantic (uint8)"
    else:
        image = work / ("stack-" + "x".join(map(str, stack)) + ".tif")
        model = work / "unet3d.pt"
        if not image.exists():
            make_3d_tiff(image, stack)
        if not model.exists():
            make_3d_model(model)
        argv = ["predict", str(image), "--model", str(model)]
        pixels = int(np.prod(stack))
        in_bytes, out_bytes = pixels * 2, pixels
        what = "x".join(map(str, stack)) + " uint16 TIFF (mapped), 3D U-Net, semantic (uint8)"
    argv += ["--out", str(out), "--overwrite"]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(argv)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        raise SystemExit(f"{case} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result.update(
        case=case,
        what=what,
        input_mb=in_bytes / 2**20,
        output_mb=out_bytes / 2**20,
        budget_mb=(in_bytes + out_bytes + GB) / 2**20,
        mpix_s=pixels / 1e6 / result["seconds"],
        log=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "",
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"from {', '.join(CASES)}")
    parser.add_argument("--size", type=int, default=16384, help="edge of the 2D image")
    parser.add_argument("--stack", default="128,1024,1024", help="shape of the 3D stack")
    parser.add_argument("--work", type=Path, help="keep inputs here (default: a temporary folder)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    stack = tuple(int(v) for v in args.stack.split(","))
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        for case in args.cases.split(","):
            print(f"running {case} ...", file=sys.stderr, flush=True)
            rows.append(run_case(case, work, args.size, stack))
    import torch

    print(f"\n{torch.get_num_threads()} CPU threads, torch {torch.__version__}\n")
    print(
        "| case | input | time (s) | MP/s | peak RSS (MB) | of which runtime | budget (MB) | within |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['what']} | {r['seconds']:.0f} | {r['mpix_s']:.2f} | "
            f"{r['peak_mb']:.0f} | {r['runtime_mb']:.0f} | {r['budget_mb']:.0f} | "
            f"{'yes' if r['peak_mb'] <= r['budget_mb'] else 'NO'} |"
        )
    for r in rows:
        print(f"{r['case']}: {r['log']}")


if __name__ == "__main__":
    main()
