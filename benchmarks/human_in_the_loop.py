"""The human-in-the-loop curve: how fast does correcting and retraining get a good model?

    python benchmarks/human_in_the_loop.py [--rounds 5] [--seconds-per-round 24]

A simulated user segments DSB2018 fluorescence nuclei starting from nothing. In round k a new
training image is predicted with the current model (nothing at round 1) and "corrected":
- dense: the prediction is replaced by the ground truth (a complete correction);
- sparse: a few strokes only where the prediction is wrong (missed nuclei get a stroke of
  object, false detections a stroke of background), as a hurried user would paint; only the
  strokes are trained on (scribbles);
- corrections: one stroke per mistake over the prediction, whose rest is accepted (the
  "strokes on a prediction" labels): a background stroke deletes each predicted object that
  matches no nucleus at IoU 0.5, an object stroke marks each nucleus left unmatched;
- sparse-iou (not run unless asked): the strokes of corrections plus one background line,
  trained as scribbles alone, which tells the strokes' share from the accepted rest's.
The model (a new one gets the CPU defaults of the widget and the CLI: depth 4, base 16, 8
patches of 128 px a step) is then fine-tuned on all corrected images so far for a fixed time
budget and scored (F1 at IoU 0.5) on validation images; each curve is repeated for
``--seeds`` seeds and the table gives their mean, lowest and highest. Targets: 5 corrected images and 2 minutes of CPU
training reach F1@0.5 of 0.75 with dense corrections (issue 4); dense >= 0.85 by round 3 and
sparse >= 0.75 by round 5 (issue 14). ``--save DIR`` keeps every round's model and
``--explain MODEL...`` shows how saved models classify the validation pixels and objects;
``--tta`` scores with test-time augmentation; ``--steps-per-round N`` trains N steps a round
instead of a time budget, so that runs repeat exactly and settings compare seed by seed;
``--zoom Z`` trains with zoom augmentation; ``--ema D`` and ``--warmup-steps N`` are
experiments (an average of the weights, a warm-up of the fine-tune's rate), not features.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_unet.core import (
    ModelFile,
    Preprocessing,
    Segmenter,
    TrainConfig,
    Trainer,
    UNetConfig,
    io,
    load_model,
    prepare_pair,
    save_model,
)
from napari_unet.core.predict.instances import InstanceAccumulator
from napari_unet.core.train.defaults import training_defaults

ROOT = Path(__file__).resolve().parents[1]
TASK = {"kind": "instances", "boundary_width": 2}
PREPROCESSING = Preprocessing(channel_mode="gray")


def sparse_correction(
    prediction: np.ndarray | None, truth: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Scribbles (0 = none, 1 = background, 2 = object) where the prediction is wrong.

    Each missed nucleus (no predicted object covers half of it) gets a short horizontal stroke
    through its centre; each false detection (a predicted object mostly on background) one
    through its centre as background; plus one background stroke across the image, so there is
    always some background. Nothing predicted counts as every nucleus missed.
    """
    strokes = np.zeros(truth.shape, np.uint8)
    row = int(rng.integers(truth.shape[0]))
    strokes[row, :][truth[row, :] == 0] = 1
    count = 1
    predicted = prediction if prediction is not None else np.zeros_like(truth)
    for obj in np.unique(truth[truth > 0]):
        mask = truth == obj
        if (predicted[mask] > 0).mean() < 0.5:
            count += _stroke(strokes, mask, 2)
    for obj in np.unique(predicted[predicted > 0]):
        mask = predicted == obj
        if (truth[mask] > 0).mean() < 0.5:
            count += _stroke(strokes, mask & (truth == 0), 1)
    return strokes, count


def correcting_strokes(prediction: np.ndarray | None, truth: np.ndarray) -> tuple[np.ndarray, int]:
    """Strokes (1 = background, 2 = object) that correct a prediction whose rest is accepted.

    Each predicted object that matches no nucleus (IoU < 0.5 with every one: a false
    detection, several nuclei merged, a poor outline) gets a background stroke through its
    background pixels, which deletes it; each nucleus left without a match gets a stroke
    through its centre. Objects that match are left alone.
    """
    strokes = np.zeros(truth.shape, np.uint8)
    count = 0
    predicted = prediction if prediction is not None else np.zeros_like(truth)
    sizes = np.bincount(truth.ravel().astype(np.int64))
    matched = set()
    for obj in np.unique(predicted[predicted > 0]):
        mask = predicted == obj
        ids, overlap = np.unique(truth[mask], return_counts=True)
        iou = [(n / (mask.sum() + sizes[t] - n), t) for t, n in zip(ids, overlap, strict=True) if t]
        best = max(iou, default=(0.0, 0))
        if best[0] >= 0.5:
            matched.add(best[1])
        else:
            count += _stroke(strokes, mask & (truth == 0), 1)
    for obj in np.unique(truth[truth > 0]):
        if obj not in matched:
            count += _stroke(strokes, truth == obj, 2)
    return strokes, count


def _stroke(strokes: np.ndarray, mask: np.ndarray, value: int) -> int:
    """Paint a horizontal stroke through the middle row of ``mask``; 1 if painted."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0
    row = int(np.median(ys))
    cols = xs[ys == row]
    strokes[row, cols] = value
    return 1


def score(
    model: ModelFile | None, val: list[tuple[np.ndarray, np.ndarray]], tta: bool = False
) -> float:
    if model is None:
        return 0.0
    segmenter = Segmenter(model, device="cpu")
    acc = InstanceAccumulator((0.5,))
    for image, truth in val:
        prediction = segmenter.predict(
            image, output="instances", min_size=10, test_time_augmentation=tta
        )
        acc.add(prediction.labels, truth)
    return acc.pooled()[0.5]["f1"]


def explain(paths: list[Path], val: list[tuple[np.ndarray, np.ndarray]], tta: bool = False) -> None:
    """Where saved models go wrong: the share of true background and of true nucleus pixels
    whose most likely class is background, interior or boundary; then the objects: how many,
    precision and recall at IoU 0.5, how many span two nuclei or more (each covering a fifth
    of it), lie mostly on background, or are fragments (cover under half of their nucleus)."""
    print(f"{'model':<28} {'pixels':<16} {'background':>10} {'interior':>9} {'boundary':>9}")
    objects = []
    for path in paths:
        segmenter = Segmenter(load_model(path), device="cpu")
        counts = {"background": np.zeros(3), "nuclei": np.zeros(3)}
        acc = InstanceAccumulator((0.5,))
        found = truths = merged = background = fragments = 0
        for image, truth in val:
            # The objects score() counts, and the probabilities they came from.
            prediction = segmenter.predict(
                image,
                output="instances",
                min_size=10,
                keep_probabilities=True,
                test_time_augmentation=tta,
            )
            winner = prediction.probabilities.argmax(0)
            counts["background"] += np.bincount(winner[truth == 0], minlength=3)
            counts["nuclei"] += np.bincount(winner[truth > 0], minlength=3)
            labels = prediction.labels
            acc.add(labels, truth)
            found += int(labels.max())
            truths += len(np.unique(truth[truth > 0]))
            merged += _merges(labels, truth)
            on_background, pieces = _strays(labels, truth)
            background += on_background
            fragments += pieces
        for what, c in counts.items():
            shares = " ".join(f"{v:>9.1%}" for v in c / c.sum())
            print(f"{path.name:<28} {'true ' + what:<16} {shares}")
        pooled = acc.pooled()[0.5]
        objects.append((path.name, truths, found, pooled, merged, background, fragments))
    print(
        f"\n{'model':<28} {'nuclei':>6} {'objects':>7} {'precision':>9} {'recall':>6} {'F1':>6} "
        f"{'merged':>6} {'on background':>13} {'fragments':>9}"
    )
    for name, truths, found, pooled, merged, background, fragments in objects:
        print(
            f"{name:<28} {truths:>6} {found:>7} {pooled['precision']:>9.3f} "
            f"{pooled['recall']:>6.3f} {pooled['f1']:>6.3f} {merged:>6} {background:>13} "
            f"{fragments:>9}"
        )


def _merges(labels: np.ndarray, truth: np.ndarray) -> int:
    """Predicted objects that cover at least a fifth of each of two or more true nuclei."""
    both = (labels > 0) & (truth > 0)
    keys, counts = np.unique(
        np.stack([labels[both], truth[both]]).astype(np.int64), axis=1, return_counts=True
    )
    sizes = np.bincount(truth.ravel().astype(np.int64))
    covering = keys[0][counts >= 0.2 * sizes[keys[1]]]
    return int((np.bincount(covering) >= 2).sum()) if covering.size else 0


def _strays(labels: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """Predicted objects mostly on background, and those that cover under half of the
    nucleus they overlap most (pieces of a split nucleus)."""
    sizes = np.bincount(truth.ravel().astype(np.int64))
    on_background = fragments = 0
    for obj in np.unique(labels[labels > 0]):
        inside = truth[labels == obj]
        if (inside > 0).mean() < 0.5:
            on_background += 1
            continue
        ids, overlap = np.unique(inside[inside > 0], return_counts=True)
        best = int(np.argmax(overlap))
        fragments += int(overlap[best] < 0.5 * sizes[ids[best]])
    return on_background, fragments


def run_variant(variant: str, train, val, args, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    model: ModelFile | None = None
    pairs = []
    rows = []
    seconds = 0.0
    for k, (image, truth) in enumerate(train[: args.rounds], start=1):
        prediction = None
        if model is not None:
            prediction = (
                Segmenter(model, device="cpu")
                .predict(image, output="instances", min_size=10)
                .labels
            )
        painted = None  # strokes painted this round (a dense correction draws every object)
        if variant == "dense":
            pairs.append(
                prepare_pair(image, truth, spatial_dims=2, preprocessing=PREPROCESSING, task=TASK)
            )
        else:
            # corrections: strokes on what is wrong, and the rest of the prediction accepted.
            corrects = variant == "corrections"
            if variant == "sparse":
                strokes, painted = sparse_correction(prediction, truth, rng)
            else:
                strokes, painted = correcting_strokes(prediction, truth)
            if variant == "sparse-iou":  # the same strokes as scribbles, plus a background line
                row = int(rng.integers(truth.shape[0]))
                strokes[row, :][(truth[row, :] == 0) & (strokes[row, :] == 0)] = 1
                painted += 1
            pairs.append(
                prepare_pair(
                    image,
                    strokes,
                    spatial_dims=2,
                    preprocessing=PREPROCESSING,
                    label_mode="corrections" if corrects else "scribbles",
                    task=TASK,
                    prediction=(
                        (prediction if prediction is not None else np.zeros_like(truth))
                        if corrects
                        else None
                    ),
                )
            )
        # Round 1 trains from scratch (a higher rate); later rounds fine-tune with the
        # widget's default rate, as a user pressing Train again would.
        # --steps-per-round: the same steps in every run, so settings compare seed by seed.
        fixed = args.steps_per_round
        config = TrainConfig(
            epochs=1 if fixed else 10**6,
            max_minutes=None if fixed else args.seconds_per_round / 60,
            steps_per_epoch=fixed or args.steps_per_epoch,
            batch_size=args.batch_size,
            patch_size=args.patch_size,
            val_fraction=args.val_fraction,
            learning_rate=args.first_lr if model is None else args.lr,
            lr_schedule=args.first_schedule if model is None else args.schedule,
            seed=1000 * seed + k,
            loss=args.loss,
            zoom=args.zoom,
        )
        base = (
            model
            if model is not None
            else UNetConfig(depth=args.depth, base_features=args.base_features, out_channels=3)
        )
        trainer = Trainer(pairs, base, config, preprocessing=PREPROCESSING, task=TASK)
        if args.warmup_steps and model is not None:
            _warm_up(trainer, args.warmup_steps)
        average = _averaging(trainer, args.ema) if args.ema else None
        started = time.perf_counter()
        steps = sum(1 for _ in trainer.train())
        seconds += time.perf_counter() - started
        if average is not None:
            trainer.best_weights = {k: v.detach().clone() for k, v in average.items()}
        # Without validation (the default here) one open-ended epoch is cut by the time
        # budget: the weights kept are the last ones.
        model = trainer.model_file()
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            save_model(model, args.save / f"{variant}-seed{seed}-round{k}.pt")
        f1 = score(model, val, args.tta)
        rows.append(
            {
                "variant": variant,
                "seed": seed,
                "round": k,
                "images": k,
                "steps": steps,
                "strokes": painted,
                "train_seconds": round(seconds, 1),
                "f1_iou_0.5": round(f1, 4),
            }
        )
        print(
            f"{variant:<7} seed {seed} round {k}: {k} corrected image(s)"
            + (f" ({painted} strokes)" if painted is not None else "")
            + f", {steps} steps, {seconds:6.1f} s of training, "
            f"val F1@0.5 {f1:.3f}",
            flush=True,
        )
    return rows


def _warm_up(trainer: Trainer, steps: int) -> None:
    """An experiment, not a feature: raise a fine-tune's rate linearly over its first
    ``steps`` steps (a fresh AdamW's first updates move every weight by about the rate)."""
    scheduled = trainer._set_learning_rate

    def warmed(done: float) -> None:
        scheduled(done)
        factor = min(1.0, (trainer.state.step + 1) / steps)
        for group in trainer.optimizer.param_groups:
            group["lr"] *= factor

    trainer._set_learning_rate = warmed


def _averaging(trainer: Trainer, decay: float) -> dict:
    """An experiment: an exponential moving average of the weights (and batch-norm
    statistics) over the steps, with the usual warm-up of the decay."""
    import torch

    average = {k: v.detach().clone().float() for k, v in trainer.model.state_dict().items()}
    stepped = trainer._step
    count = [0]

    def step(x, y):
        loss = stepped(x, y)
        count[0] += 1
        d = min(decay, (1 + count[0]) / (10 + count[0]))
        with torch.no_grad():
            for k, v in trainer.model.state_dict().items():
                if v.dtype.is_floating_point:
                    average[k].mul_(d).add_(v.detach().float(), alpha=1 - d)
                else:
                    average[k] = v.detach().clone()
        return loss

    trainer._step = step
    return average


def print_summary(rows: list[dict]) -> None:
    """Per variant and round: mean F1 over the seeds, and their lowest and highest."""
    print(
        f"\n{'variant':<11} {'round':>5} {'strokes':>7} {'steps':>6} {'train s':>8} "
        f"{'F1 mean':>8} {'min':>6} {'max':>6}"
    )
    for variant, k in dict.fromkeys((r["variant"], r["round"]) for r in rows):
        same = [r for r in rows if r["variant"] == variant and r["round"] == k]
        f1 = [r["f1_iou_0.5"] for r in same]
        painted = [r["strokes"] for r in same if r["strokes"] is not None]
        strokes = f"{np.mean(painted):>7.1f}" if painted else f"{'-':>7}"
        print(
            f"{variant:<11} {k:>5} {strokes} {np.mean([r['steps'] for r in same]):>6.0f} "
            f"{np.mean([r['train_seconds'] for r in same]):>8.1f} {np.mean(f1):>8.3f} "
            f"{min(f1):>6.3f} {max(f1):>6.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dsb2018")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds-per-round", type=float, default=24.0)
    parser.add_argument(
        "--val-images", type=int, default=20, help="fluorescence validation images scored"
    )
    parser.add_argument("--variants", default="dense,sparse,corrections")
    parser.add_argument(
        "--first-lr", type=float, default=3e-3, help="learning rate of round 1 (from scratch)"
    )
    parser.add_argument(
        "--lr", type=float, default=1e-3, help="learning rate of the fine-tuning rounds"
    )
    parser.add_argument(
        "--schedule", default="constant", help="learning-rate schedule of the fine-tuning rounds"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="held out for validation in every round (the widget's default: 0.2)",
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=10**6,
        help="steps between validations (the widget's default: 20)",
    )
    parser.add_argument(
        "--first-schedule", default="constant", help="learning-rate schedule of round 1"
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="repeats (initialisation, sampling, strokes)"
    )
    # A new model gets what the widget and the CLI give one on a CPU (core/train/defaults.py).
    cpu = training_defaults(2, "cpu")
    parser.add_argument("--depth", type=int, default=cpu.depth)
    parser.add_argument("--base-features", type=int, default=cpu.base_features)
    parser.add_argument("--batch-size", type=int, default=cpu.batch_size)
    parser.add_argument("--patch-size", type=int, default=cpu.patch_size)
    parser.add_argument("--loss", default="ce+dice", help="ce, dice or ce+dice")
    parser.add_argument(
        "--steps-per-round",
        type=int,
        help="train this many steps a round instead of --seconds-per-round (repeatable)",
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="experiment: fine-tunes raise their rate linearly over this many steps",
    )
    parser.add_argument(
        "--zoom", type=float, default=1.0, help="zoom augmentation's largest factor (1: none)"
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="experiment: keep an exponential moving average of the weights (this decay)",
    )
    parser.add_argument(
        "--tta",
        action="store_true",
        help="score with test-time augmentation (Segment's option: 8 flips and rotations)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--save", type=Path, help="a folder to save every round's model in")
    parser.add_argument(
        "--explain",
        type=Path,
        nargs="+",
        metavar="MODEL",
        help="instead of a curve: how saved models classify the validation pixels",
    )
    args = parser.parse_args()
    if not (args.data / "train" / "meta.json").is_file():
        print(f"DSB2018 data not found at {args.data}; nothing to measure")
        return

    def load(split: str, limit: int, skip_small: bool) -> list[tuple[np.ndarray, np.ndarray]]:
        meta = [
            m
            for m in json.loads((args.data / split / "meta.json").read_text())
            if m["kind"] == "fluo"
        ]
        if skip_small:  # a user corrects images with something to correct
            meta = [m for m in meta if m["n"] >= 10]
        out = []
        for m in meta[:limit]:
            image = io.read_image(args.data / split / "images" / f"{m['id']}.png")
            out.append((image, io.read_labels(args.data / split / "labels" / f"{m['id']}.png")))
        return out

    train = load("train", args.rounds, skip_small=True)
    val = load("val", args.val_images, skip_small=False)
    if args.explain:
        explain(args.explain, val, args.tta)
        return
    print(
        f"{len(train)} training images, {len(val)} validation images (DSB2018 fluorescence); "
        f"{args.seconds_per_round:.0f} s of CPU training per round"
    )
    rows = []
    for variant in args.variants.split(","):
        for seed in range(args.seeds):
            rows += run_variant(variant, train, val, args, seed)
    print_summary(rows)
    print(
        "targets (issue 14, mean of the seeds): dense >= 0.85 by round 3, sparse >= 0.75 by round 5"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
