"""``napari-unet evaluate``: score predictions against ground truth, pixel or object
metrics, with reports that never overwrite an input."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from .common import (
    fmt,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score predictions against ground truth",
        description="Per-image and pooled pixel metrics of predicted labels (and probabilities) "
        "against ground-truth labels, optionally inside masks.",
    )
    p.add_argument(
        "--pred",
        required=True,
        help="folder of predictions (<name>_labels.tif, <name>_probabilities.tif or <name>.*)",
    )
    p.add_argument("--truth", required=True, help="folder of ground-truth labels")
    p.add_argument(
        "--mask", help="folder of masks: only pixels inside count (e.g. DRIVE's field of view)"
    )
    p.add_argument(
        "--pattern", help="regular expression extracting the matching key from file names"
    )
    p.add_argument(
        "--classes",
        type=int,
        default=2,
        help="number of classes including background (default 2: any label > 0 is foreground)",
    )
    p.add_argument(
        "--threshold", type=float, default=0.5, help="threshold for probability-only predictions"
    )
    p.add_argument(
        "--instances",
        action="store_true",
        help="score objects instead of pixels: match predicted to true objects at IoU 0.5-0.9 "
        "(precision, recall, F1, mean matched IoU, panoptic quality)",
    )
    p.add_argument("--csv", help="write per-image and pooled metrics to this CSV file")
    p.add_argument("--json", help="write per-image and pooled metrics to this JSON file")
    p.add_argument(
        "--overwrite", action="store_true", help="replace the --csv / --json files if they exist"
    )
    p.set_defaults(run=_run_evaluate)


def _to_classes(labels, classes: int):
    import numpy as np

    from ..core.train.targets import check_labels

    labels = check_labels(labels, "labels")
    return (labels > 0).astype(np.int64) if classes <= 2 else labels.astype(np.int64)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ..core import UserInputError
    from ..core.metrics import METRIC_NAMES

    truth, labels, probs, masks = _matched_files(args)
    _check_reports(
        args, [p for index in (truth, labels, probs, masks or {}) for p in index.values()]
    )
    if args.instances:
        if not labels:
            raise UserInputError(
                "object scores need label predictions (<name>_labels.tif), not probabilities"
            )
        return _evaluate_instances(truth, labels, args)
    rows, pooled = _pixel_scores(args, truth, labels, probs, masks)
    _print_pixel_table(rows)
    _write_reports(
        args,
        ["image", "class", *METRIC_NAMES],
        rows,
        {"images": [r for r in rows if r["image"] != "POOLED"], "pooled": pooled},
    )
    return 0


def _matched_files(args: argparse.Namespace):
    """(truth, label predictions, probability predictions, masks or None) by key; every key
    must be in every index, or the error lists the files without a partner."""
    from ..core import UserInputError, io

    truth = io.index_folder(args.truth, args.pattern, "truth")

    def is_prob(path: Path) -> bool:
        return path.name[: -len(path.suffix)].endswith("_probabilities")

    pred_dir = Path(args.pred)
    if not pred_dir.is_dir():
        raise UserInputError(f"prediction folder {pred_dir} does not exist")
    found = [p for p in pred_dir.iterdir() if io.is_image_file(p)]
    labels: dict[str, Path] = {}
    probs: dict[str, Path] = {}
    if any(not is_prob(p) for p in found) or not found:
        labels = io.index_folder(
            pred_dir, args.pattern, "prediction", ("_labels",), select=lambda p: not is_prob(p)
        )
    if any(is_prob(p) for p in found):
        probs = io.index_folder(
            pred_dir, args.pattern, "probabilities", ("_probabilities",), select=is_prob
        )
    indexes = {
        "truth": truth,
        "prediction": {k: labels.get(k) or probs.get(k) for k in set(labels) | set(probs)},
    }
    masks = io.index_folder(args.mask, args.pattern, "mask") if args.mask else None
    if masks is not None:
        indexes["mask"] = masks
    problem = io.unmatched_message(indexes, args.pattern)
    if problem:
        raise UserInputError(problem)
    return truth, labels, probs, masks


def _pixel_scores(args: argparse.Namespace, truth, labels, probs, masks):
    """Per-image rows of pixel metrics, then the pooled ones (counts added over images)."""
    import numpy as np

    from ..core import MetricAccumulator, UserInputError, io

    acc = MetricAccumulator(max(2, args.classes))
    rows = []
    for key in sorted(truth):
        gt = _to_classes(io.read_labels(truth[key]), args.classes)
        scores = None
        if key in probs:
            p = np.asarray(io.read_image(probs[key]), np.float32)
            # (K, ...) probabilities: the foreground channel for binary tasks.
            if p.ndim == gt.ndim + 1:
                p = p[-1] if p.shape[0] <= 2 else p
            if args.classes <= 2:
                scores = p
        if key in labels:
            pred = _to_classes(io.read_labels(labels[key]), args.classes)
        elif scores is not None:
            pred = (scores > args.threshold).astype(np.int64)
        else:
            raise UserInputError(
                f"no label prediction for {key} and probabilities of a multi-class model cannot be scored"
            )
        mask = io.read_labels(masks[key]) > 0 if masks is not None else None
        try:
            report = acc.add(pred, gt, scores=scores, mask=mask)
        except UserInputError as err:
            raise UserInputError(f"{key}: {err}") from err
        for cls, row in report.items():
            rows.append({"image": key, "class": cls, **row})
    pooled = acc.pooled()
    for cls, row in pooled.items():
        rows.append({"image": "POOLED", "class": cls, **row})
    return rows, pooled


def _print_pixel_table(rows: list[dict]) -> None:
    """The metrics that have a value somewhere, one row per image and class, pooled last."""
    from ..core.metrics import METRIC_NAMES

    names = [m for m in METRIC_NAMES if any(not math.isnan(r.get(m, float("nan"))) for r in rows)]
    width = max(len("image"), *(len(r["image"]) for r in rows))
    header = f"{'image':<{width}}  class  " + "  ".join(f"{n:>11}" for n in names)
    print(header)
    for r in rows:
        if r["image"] == "POOLED" and r["class"] == "1":
            print("-" * len(header))
        print(
            f"{r['image']:<{width}}  {r['class']:>5}  "
            + "  ".join(f"{fmt(r.get(n)):>11}" for n in names)
        )


def _check_reports(args: argparse.Namespace, inputs: list[Path]) -> None:
    """--csv / --json: refused before any work when they exist (without --overwrite), name the
    same file, or name one of the files this evaluation reads."""
    from ..core import UserInputError
    from ..core.data.safe_paths import refuse_inputs

    reports = {
        flag: Path(value) for flag, value in (("--csv", args.csv), ("--json", args.json)) if value
    }
    if len(reports) == 2 and reports["--csv"].resolve() == reports["--json"].resolve():
        raise UserInputError("--csv and --json name the same file; give two file names")
    for flag, path in reports.items():
        refuse_inputs([path], inputs, flag)
        if path.is_dir():
            raise UserInputError(
                f"{flag} {path} is a folder; give a file name such as scores.{flag[2:]}"
            )
        if (path.exists() or path.is_symlink()) and not args.overwrite:
            raise UserInputError(f"{flag} {path} already exists; pass --overwrite to replace it")
        if not path.resolve().parent.is_dir():
            raise UserInputError(f"{flag} {path}: folder {path.parent} does not exist")


def _write_reports(args: argparse.Namespace, fields: list[str], rows: list[dict], report) -> None:
    """Write the --csv and --json reports atomically (checked by :func:`_check_reports`)."""
    import io as _io

    from ..core.data.io import atomic_write

    if args.csv:
        text = _io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(args.csv, lambda tmp: tmp.write_text(text.getvalue()))
    if args.json:
        data = json.dumps(report, indent=2, default=float)
        atomic_write(args.json, lambda tmp: tmp.write_text(data))


def _evaluate_instances(
    truth: dict[str, Path], labels: dict[str, Path], args: argparse.Namespace
) -> int:
    """Object matching per image (at IoU 0.5) and pooled at every threshold."""
    from ..core import UserInputError, io
    from ..core.predict.instances import InstanceAccumulator
    from ..core.train.targets import check_labels

    acc = InstanceAccumulator()
    rows = []
    for key in sorted(truth):
        gt = check_labels(io.read_labels(truth[key]), f"ground truth {key}")
        pred = check_labels(io.read_labels(labels[key]), f"prediction {key}")
        try:
            report = acc.add(pred, gt)
        except ValueError as err:
            raise UserInputError(f"{key}: {err}") from err
        rows += [{"image": key, "iou_threshold": t, **m} for t, m in report.items()]
    pooled = acc.pooled()
    names = ["precision", "recall", "f1", "mean_matched_iou", "panoptic_quality", "tp", "fp", "fn"]
    width = max(len("image"), *(len(k) for k in truth))
    print(f"{'image':<{width}}  " + "  ".join(f"{n + '@0.5':>20}" for n in names[:5]))
    for r in rows:
        if r["iou_threshold"] == 0.5:
            print(f"{r['image']:<{width}}  " + "  ".join(f"{fmt(r[n]):>20}" for n in names[:5]))
    print(f"\npooled over {len(truth)} image(s)")
    print("IoU threshold  " + "  ".join(f"{n:>16}" for n in names))
    for t, m in pooled.items():
        print(f"{t:>13.2f}  " + "  ".join(f"{fmt(m[n]):>16}" for n in names))
    _write_reports(
        args,
        ["image", "iou_threshold", *names],
        rows + [{"image": "POOLED", "iou_threshold": t, **m} for t, m in pooled.items()],
        {"images": rows, "pooled": {str(t): m for t, m in pooled.items()}},
    )
    return 0
