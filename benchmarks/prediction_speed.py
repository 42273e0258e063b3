"""Prediction throughput and memory: our tiler against MONAI's sliding window and the machine's ceiling.

    python benchmarks/prediction_speed.py                    # 1024x1024, base 16 and 32, 3D
    python benchmarks/prediction_speed.py --nets base16 --size 2048

For each network (random weights with non-trivial batch-norm statistics, identical for every
method) the same image is predicted to probabilities by:

- ``whole``: one forward pass over the whole image in float32 (the reference output);
- ``ours exact``: the same in float32 with the exact halo;
- ``ours``: ``predict_tiled`` as the plugin runs it (``precision="auto"``: bfloat16 on CPUs
  with AMX and on GPUs; batch norm folded into the convolutions, as ``Segmenter`` does, and
  on Linux glibc told to reuse freed memory, see ``reuse_cpu_memory``);
- ``MONAI``: ``monai.inferers.sliding_window_inference`` with ROI 256 (96 in 3D), overlap
  0.25, gaussian blending, float32: the peer most users would pick, at its defaults;
- ``MONAI bf16``: the same under the same autocast and memory layout as ``ours``.

Each method runs in a fresh process (warm-up call first, then the best of ``--repeats``) so
that its peak resident memory can be reported. Agreement is the largest and mean absolute
difference from the whole-image probabilities. The ceiling times every convolution of the
network alone, with the input shape it sees in the whole-image pass, and turns the sum into
the best megapixels per second the network could reach on this machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _memory import peak_rss_mb

from napari_unet.core import ImageSource, Preprocessing, UNet, UNetConfig, predict_tiled
from napari_unet.core.network.devices import (
    autocast,
    autocast_dtype,
    memory_format,
    resolve_device,
    reuse_cpu_memory,
)
from napari_unet.core.network.fold import fold_batchnorm
from napari_unet.core.network.unet import padding_mode

NETS = {
    "base16": UNetConfig(depth=4, base_features=16),
    "base32": UNetConfig(depth=4, base_features=32),
    "3d": UNetConfig(spatial_dims=3, depth=3, base_features=16),
    # The issue-14 architectures, beside base16: the paper's valid geometry, MobileNetV2 encoder.
    "valid16": UNetConfig(depth=4, base_features=16, padding="valid"),
    "mobilenet16": UNetConfig(depth=5, base_features=16, encoder="mobilenet_v2"),
}
METHODS = ("whole", "ours exact", "ours", "MONAI", "MONAI bf16")


def build_net(name: str) -> UNet:
    """The benchmark network: seeded weights and batch-norm statistics like a trained model's."""
    torch.manual_seed(0)
    net = UNet(NETS[name])
    gen = torch.Generator().manual_seed(1)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape, generator=gen))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return net.eval()


def test_shape(name: str, size: int) -> tuple[int, ...]:
    """size x size in 2D; in 3D a volume of size^2 x 4 voxels (1024: 112 x 192 x 192), larger
    than MONAI's ROI of 96 in every axis, so that no method pads it."""
    if NETS[name].spatial_dims == 2:
        return (size, size)
    edge = size * 3 // 16
    return (size * 4 * size // edge // edge // 16 * 16, edge, edge)


def test_image(name: str, size: int) -> np.ndarray:
    """A smooth, structured uint16 image (random blobs), so outputs are not trivially flat."""
    from scipy import ndimage

    shape = test_shape(name, size)
    noise = np.random.default_rng(0).random(shape, dtype=np.float32)
    blobs = ndimage.gaussian_filter(noise, 4)
    return ((blobs - blobs.min()) / np.ptp(blobs) * 60000).astype(np.uint16)


def _normalised(image: np.ndarray, dims: int) -> torch.Tensor:
    source = ImageSource(image, dims, Preprocessing(), 1)
    return torch.from_numpy(source.read(tuple(slice(None) for _ in source.shape)))[None]


def run_method(method: str, net_name: str, size: int, repeats: int, out: Path) -> dict:
    """Time one method in this process; save its foreground probability to ``out``."""
    device = resolve_device("auto")
    net = build_net(net_name).to(device)
    config = net.config
    image = test_image(net_name, size)
    dims = config.spatial_dims
    baseline = peak_rss_mb()

    def whole() -> np.ndarray:
        x = _normalised(image, dims).to(device)
        multiple = config.size_multiple
        pads = [(-s) % multiple for s in x.shape[2:]]
        mode = padding_mode(tuple(x.shape[2:]), tuple(pads))
        padded = torch.nn.functional.pad(x, [p for pad in reversed(pads) for p in (0, pad)], mode)
        with torch.inference_mode():
            prob = torch.softmax(net(padded), 1)
        crop = (slice(None), slice(None), *(slice(0, s) for s in x.shape[2:]))
        return prob[crop][0].cpu().numpy()

    folded = fold_batchnorm(copy.deepcopy(net))  # as Segmenter runs it

    def ours(precision: str) -> np.ndarray:
        source = ImageSource(image, dims, Preprocessing(), 1)
        prob = np.zeros((config.out_channels, *source.shape), np.float32)
        # The exact mode keeps the full receptive radius as halo in 3D too.
        halo = "exact" if precision == "float32" else "auto"
        for _ in predict_tiled(folded, source, prob, device=device, precision=precision, halo=halo):
            pass
        return prob

    def monai(reduced: bool) -> np.ndarray:
        from monai.inferers import sliding_window_inference

        roi = (256,) * 2 if dims == 2 else (96,) * 3
        x = _normalised(image, dims).to(device)
        layout = memory_format(device, dims) if reduced else torch.contiguous_format
        model = net.to(memory_format=layout)

        def predictor(batch: torch.Tensor) -> torch.Tensor:
            with autocast(device, "auto" if reduced else "float32"):
                return model(batch.contiguous(memory_format=layout)).float()

        with torch.inference_mode():
            logits = sliding_window_inference(x, roi, 1, predictor, overlap=0.25, mode="gaussian")
        return torch.softmax(logits, 1)[0].cpu().numpy()

    runners = {
        "whole": whole,
        "ours exact": lambda: ours("float32"),
        "ours": lambda: ours("auto"),
        "MONAI": lambda: monai(False),
        "MONAI bf16": lambda: monai(True),
    }
    runner = runners[method]
    try:
        result = runner()  # warm-up: first-call set-up is not what a user waits for each time
    except RuntimeError as err:  # e.g. the whole image does not fit
        return {"error": str(err).splitlines()[0]}
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = runner()
        times.append(time.perf_counter() - started)
    np.save(out, result[-1])
    peak = peak_rss_mb()
    return {
        "seconds": min(times),
        "mpix_per_s": image.size / 1e6 / min(times),
        "peak_extra_mb": peak - baseline,
        "device": str(device),
        "reduced": str(autocast_dtype(device, "auto")),
    }


def conv_ceiling(net_name: str, size: int, precision: str) -> dict:
    """Best-possible MP/s: every convolution timed alone at the shape the whole pass gives it."""
    device = resolve_device("auto")
    net = build_net(net_name).to(device)
    dims = net.config.spatial_dims
    image = test_image(net_name, size)
    x = _normalised(image, dims).to(device)
    shapes: list[tuple[torch.nn.Module, tuple[int, ...]]] = []
    convs = (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    hooks = [
        m.register_forward_pre_hook(lambda m, args: shapes.append((m, tuple(args[0].shape))))
        for m in net.modules()
        if isinstance(m, convs)
    ]
    with torch.inference_mode():
        net(x)
    for hook in hooks:
        hook.remove()
    layout = memory_format(device, dims)
    total, flops = 0.0, 0.0
    # Under the same heap reuse as the tiler: otherwise every output of tens of MB is a fresh
    # memory map and the "ceiling" times page faults, not arithmetic.
    with torch.inference_mode(), autocast(device, precision), reuse_cpu_memory():
        for module, shape in shapes:
            module = module.to(memory_format=layout)
            inp = torch.randn(shape, device=device).contiguous(memory_format=layout)
            module(inp)
            best = np.inf
            for _ in range(5):
                _sync(device)
                started = time.perf_counter()
                output = module(inp)
                _sync(device)
                best = min(best, time.perf_counter() - started)
            total += best
            kernel = int(np.prod(module.kernel_size))
            if isinstance(module, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
                positions = int(np.prod(shape[2:]))
            else:
                positions = int(np.prod(output.shape[2:]))
            flops += 2 * module.in_channels * module.out_channels * kernel * positions
    matmul = matmul_peak(device, precision)
    return {
        "mpix_per_s": image.size / 1e6 / total,
        "gflop_per_mpix": flops / 1e9 / (image.size / 1e6),
        "gflop_per_s": flops / 1e9 / total,
        "matmul_gflop_per_s": matmul,
        "matmul_mpix_per_s": matmul / (flops / 1e9 / (image.size / 1e6)),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, precision: str, n: int = 4096) -> float:
    """GFLOP/s of a dense n x n matrix product in the precision the network runs in: the
    machine's arithmetic peak, which no convolution of few channels reaches."""
    dtype = autocast_dtype(device, precision) or torch.float32
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = np.inf
    with torch.inference_mode():
        a @ b
        for _ in range(5):
            _sync(device)
            started = time.perf_counter()
            a @ b
            _sync(device)
            best = min(best, time.perf_counter() - started)
    return 2 * n**3 / 1e9 / best


def _worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    if args.method == "ceiling":
        result = {p: conv_ceiling(args.net, args.size, p) for p in ("float32", "auto")}
    else:
        result = run_method(args.method, args.net, args.size, args.repeats, Path(args.save))
    print(json.dumps(result))


def _spawn(method: str, net: str, args: argparse.Namespace, save: Path) -> dict:
    command = [
        sys.executable, __file__, "--worker", method, "--nets", net, "--size", str(args.size),
        "--repeats", str(args.repeats), "--save", str(save),
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nets", default="base16,base32,3d", help=f"from {', '.join(NETS)}")
    parser.add_argument("--size", type=int, default=1024, help="2D edge (3D: see test_shape)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.method, args.net = args.worker, args.nets
        _worker(args)
        return

    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.nets.split(","):
            rows: dict[str, dict] = {}
            for method in args.methods.split(","):
                save = Path(tmp) / f"{net}-{method.replace(' ', '_')}.npy"
                rows[method] = _spawn(method, net, args, save)
                if save.exists() and (Path(tmp) / f"{net}-whole.npy").exists():
                    reference = np.load(Path(tmp) / f"{net}-whole.npy")
                    diff = np.abs(np.load(save) - reference)
                    rows[method].update(max_diff=float(diff.max()), mean_diff=float(diff.mean()))
                print(f"{net} {method}: {rows[method]}", file=sys.stderr, flush=True)
            ceiling = _spawn("ceiling", net, args, Path(tmp) / "unused.npy")
            report[net] = {"methods": rows, "ceiling": ceiling}
            _print_table(net, args.size, rows, ceiling)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _print_table(net: str, size: int, rows: dict[str, dict], ceiling: dict) -> None:
    config = NETS[net]
    shape = "x".join(map(str, test_shape(net, size)))
    print(f"\n{net} (depth {config.depth}, {config.spatial_dims}D), input {shape}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    print("| method | MP/s | seconds | vs MONAI | peak extra MB | max abs diff | mean abs diff |")
    print("|---|---|---|---|---|---|---|")
    monai = rows.get("MONAI", {}).get("mpix_per_s")
    for method, row in rows.items():
        if "error" in row:
            print(f"| {method} | failed: {row['error']} | | | | | |")
            continue
        ratio = f"{row['mpix_per_s'] / monai:.2f}x" if monai else ""
        print(
            f"| {method} | {row['mpix_per_s']:.3f} | {row['seconds']:.2f} | {ratio} | "
            f"{row['peak_extra_mb']:.0f} | {row.get('max_diff', float('nan')):.1e} | "
            f"{row.get('mean_diff', float('nan')):.1e} |"
        )
    if "error" not in ceiling:
        for precision, c in ceiling.items():
            ours_row = rows.get("ours exact" if precision == "float32" else "ours", {})
            share = (
                f", ours at {ours_row['mpix_per_s'] / c['mpix_per_s']:.0%} of it"
                if "mpix_per_s" in ours_row
                else ""
            )
            print(
                f"ceiling ({precision}): {c['mpix_per_s']:.3f} MP/s "
                f"({c['gflop_per_mpix']:.1f} GFLOP per MP at {c['gflop_per_s']:.0f} GFLOP/s){share}"
            )
            if "matmul_gflop_per_s" in c:
                print(
                    f"  dense matmul peak ({precision}): {c['matmul_gflop_per_s']:.0f} GFLOP/s, "
                    f"i.e. at most {c['matmul_mpix_per_s']:.3f} MP/s for this network"
                )


if __name__ == "__main__":
    main()
