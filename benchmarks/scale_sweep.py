"""How the bundled models hold up when the user's pixels are not their training data's.

    python benchmarks/scale_sweep.py [--data ../shared/data/dsb2018] [--factors 0.25,0.5,1,2,4]
    python benchmarks/scale_sweep.py --dataset drive --model /tmp/drive-folds/fold0.pt

Every DSB2018 val image (73: fluorescence, H&E colour, brightfield) is rescaled by each factor
(linear interpolation with anti-aliasing for the image, nearest for the labels), segmented
into instances with the CLI's defaults, once with ``object_size="native"`` (predicting on the
image's own grid, as before models knew their scale) and once with ``"auto"`` (the default:
estimate, rescale, check, map back), and scored at IoU 0.5 against the labels on the original
grid (the predicted labels are brought back by nearest neighbour). Goal: auto within 0.03 of
the factor-1 score at every factor.

Also printed: the estimator's error (its first estimate of the median object diameter against
the labels' median at that factor; goal within 20%) and what the estimate costs beside the
prediction at factor 1 (goal under 15%). The machine matters for times: say which.

``--dataset drive``: the DRIVE images a cross-validation fold's model did not see (``--held-out``,
default 21-25, fold 0 of ``benchmarks/drive_vessels.py --keep``; the bundled retina model saw
all 20), rescaled the same way, segmented into vessels, scored by pooled vessel F1 inside the
field of view on the original grid. The estimator's error is that of the scale it finds (the
width it estimates over the model's, against the factor).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_unet.core import Segmenter, io
from napari_unet.core.data.normalize import ImageSource
from napari_unet.core.data.object_size import equivalent_diameters
from napari_unet.core.predict.instances import InstanceAccumulator
from napari_unet.core.predict.scale import choose_scale

ROOT = Path(__file__).resolve().parents[1]
FACTORS = (0.25, 0.33, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6)


def rescaled(image: np.ndarray, factor: float, labels: bool) -> np.ndarray:
    """``image`` (H, W[, C]) at ``factor``, as another microscope or camera would give it."""
    if factor == 1:
        return image
    zoom = (factor, factor) + (1,) * (image.ndim - 2)
    if labels:
        return ndi.zoom(image, zoom, order=0)
    data = image.astype(np.float32)
    if factor < 1:  # anti-aliasing, as a camera's pixels average
        data = ndi.gaussian_filter(data, ((1 / factor - 1) / 2,) * 2 + (0,) * (image.ndim - 2))
    return np.clip(ndi.zoom(data, zoom, order=1), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def on_grid(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Predicted labels brought back to the original labels' grid (nearest)."""
    if labels.shape == shape:
        return labels
    return ndi.zoom(labels, np.array(shape) / np.array(labels.shape), order=0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=("dsb2018", "drive"), default="dsb2018")
    parser.add_argument("--data", type=Path, help="default: ../shared/data/<dataset>")
    parser.add_argument("--model", help="default: nuclei; for drive a fold's held-out model")
    parser.add_argument("--held-out", default="21-25", help="drive: the images the model never saw")
    parser.add_argument("--factors", default=",".join(map(str, FACTORS)))
    parser.add_argument("--limit", type=int, help="only the first N images (quick look)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.dataset == "drive":
        drive_sweep(args)
        return
    args.data = args.data or ROOT.parent / "shared" / "data" / "dsb2018"
    meta_file = args.data / "val" / "meta.json"
    if not meta_file.is_file():
        print(f"DSB2018 data not found at {args.data}; nothing to measure")
        return
    meta = json.loads(meta_file.read_text())[: args.limit]
    factors = [float(f) for f in args.factors.split(",")]
    segmenter = Segmenter(args.model or "nuclei", device=args.device)
    model = segmenter.model_file
    rows = []
    for factor in factors:
        scores = {mode: {} for mode in ("native", "auto")}
        errors, seconds = [], {"estimate": 0.0, "native": 0.0, "auto": 0.0}
        for entry in meta:
            image = io.read_image(args.data / "val" / "images" / f"{entry['id']}.png")
            truth = io.read_labels(args.data / "val" / "labels" / f"{entry['id']}.png")
            image = rescaled(image, factor, labels=False)
            started = time.perf_counter()
            source = ImageSource(image, 2, model.preprocessing, model.config.in_channels)
            first = choose_scale(model.scale, source, "auto")
            seconds["estimate"] += time.perf_counter() - started
            true_size = float(np.median(equivalent_diameters(truth))) * factor
            if first.found is not None and true_size > 0:
                errors.append(abs(first.found / true_size - 1))
            for mode in ("native", "auto"):
                started = time.perf_counter()
                result = segmenter.predict(image, output="instances", object_size=mode)
                seconds[mode] += time.perf_counter() - started
                for group in ("all", entry["kind"]):
                    scores[mode].setdefault(group, InstanceAccumulator((0.5,)))
                    scores[mode][group].add(on_grid(result.labels, truth.shape), truth)
        row = {
            "factor": factor,
            **{
                f"{mode} {group}": round(acc.pooled()[0.5]["f1"], 3)
                for mode in scores
                for group, acc in scores[mode].items()
            },
            **_estimate_columns(errors, seconds),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    _table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


def _estimate_columns(errors: list[float], seconds: dict[str, float]) -> dict:
    """The estimator's error (median, share within 20%) and the times of one factor."""
    return {
        "estimate error median": round(float(np.median(errors)), 3) if errors else None,
        "estimates within 20%": round(float(np.mean(np.array(errors) < 0.2)), 3)
        if errors
        else None,
        **{f"{k} s": round(v, 3) for k, v in seconds.items()},
    }


def _table(
    rows: list[dict], groups: tuple[str, ...] = ("all", "fluo", "color", "bright_gray")
) -> None:
    print()
    print(
        "| factor | "
        + " | ".join(f"{g} native / auto" for g in groups)
        + " | estimate error (median, within 20%) | estimate / native prediction time |"
    )
    print("|---" * (len(groups) + 3) + "|")
    for row in rows:
        cells = [
            f"{row.get(f'native {g}', float('nan')):.3f} / {row.get(f'auto {g}', float('nan')):.3f}"
            for g in groups
        ]
        error = row["estimate error median"]
        within = row["estimates within 20%"]
        share = row["estimate s"] / max(row["native s"], 1e-9)
        print(
            f"| {row['factor']:g} | "
            + " | ".join(cells)
            + f" | {error if error is not None else '-'} , {within if within is not None else '-'}"
            + f" | {share:.0%} |"
        )


def drive_sweep(args: argparse.Namespace) -> None:
    """The sweep on DRIVE's held-out images: vessel F1 in the field of view, native and auto."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from train_retina_model import drive_images

    data = args.data or ROOT.parent / "shared" / "data" / "drive" / "training"
    first, last = (int(n) for n in args.held_out.split("-"))
    items = [i for i in drive_images(data) if first <= int(i.key) <= last]
    if not items or not args.model:
        print(
            f"DRIVE images {args.held_out} not found at {data}, or no --model; nothing to measure"
        )
        return
    segmenter = Segmenter(args.model, device=args.device)
    model = segmenter.model_file
    rows = []
    for factor in [float(f) for f in args.factors.split(",")]:
        counts = {mode: np.zeros(3) for mode in ("native", "auto")}  # tp, predicted, true
        errors, seconds = [], {"estimate": 0.0, "native": 0.0, "auto": 0.0}
        for item in items:
            image = rescaled(io.read_image(item.image), factor, labels=False)
            truth, fov = io.read_labels(item.vessels) > 0, io.read_labels(item.fov) > 0
            started = time.perf_counter()
            source = ImageSource(image, 2, model.preprocessing, model.config.in_channels)
            first_choice = choose_scale(model.scale, source, "auto")
            seconds["estimate"] += time.perf_counter() - started
            if first_choice.found is not None:
                errors.append(abs(first_choice.found / (model.scale.size * factor) - 1))
            for mode in counts:
                started = time.perf_counter()
                result = segmenter.predict(image, output="semantic", object_size=mode)
                seconds[mode] += time.perf_counter() - started
                found = on_grid(result.labels, truth.shape) > 0
                counts[mode] += [
                    (found & truth & fov).sum(),
                    (found & fov).sum(),
                    (truth & fov).sum(),
                ]
        row = {
            "factor": factor,
            **{f"{m} all": round(2 * c[0] / max(c[1] + c[2], 1), 3) for m, c in counts.items()},
            **_estimate_columns(errors, seconds),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    _table(rows, groups=("all",))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
