"""The ``napari-unet`` command: train, predict, evaluate, info, import and demo.

Every subcommand drives the same core as the napari widgets. Bad input ends with one line
starting ``napari-unet: error:`` and exit status 2; ``--debug`` shows tracebacks instead.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USER_ERROR = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a Unix tool killed by a closed pipe
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ---------------------------------------------------------------- train


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune a U-Net on folders of image/label pairs",
        description="Train a U-Net from a folder of images and a folder of labels matched by file name.",
    )
    p.add_argument("--images", required=True, help="folder of training images")
    p.add_argument("--labels", required=True, help="folder of label images (0 = background)")
    p.add_argument(
        "--val-images", help="folder of validation images (default: hold out --val-fraction)"
    )
    p.add_argument("--val-labels", help="folder of validation labels")
    p.add_argument(
        "--pattern",
        help="regular expression extracting the matching key from file names, e.g. '^(\\d+)_'",
    )
    p.add_argument("--out", required=True, help="model file to write (saved after every epoch)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--from",
        dest="from_model",
        metavar="MODEL",
        help="fine-tune this model file or bundled model",
    )
    start.add_argument(
        "--resume",
        metavar="MODEL",
        help="continue an interrupted training saved in this model file",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="number of epochs (default 50)")
    length.add_argument(
        "--minutes",
        type=float,
        help="time budget in minutes instead of a number of epochs; a new model's depth, width, "
        "patch and batch size left open are then planned from the data and the device",
    )
    p.add_argument(
        "--no-plan",
        action="store_true",
        help="with --minutes, use the fixed defaults instead of planning the settings",
    )
    p.add_argument(
        "--steps-per-epoch", type=int, help="steps between validations (default: from data size)"
    )
    p.add_argument(
        "--label-mode",
        choices=("dense", "scribbles", "corrections"),
        default="dense",
        help="dense: 0 = background; scribbles: 0 = unlabelled, 1 = background, 2.. = classes; "
        "corrections: strokes (as scribbles) correcting --predictions, whose rest is accepted",
    )
    p.add_argument(
        "--predictions",
        metavar="FOLDER",
        help="with --label-mode corrections: the predictions the strokes correct "
        "(<name>_labels.tif from predict, or <name>.*), matched to the images by name",
    )
    p.add_argument(
        "--classes",
        type=int,
        help="number of classes including background (default: the model's with --from/--resume, else 2)",
    )
    p.add_argument(
        "--ignore-value", type=int, help="label value marking unannotated pixels (dense mode)"
    )
    p.add_argument(
        "--instances",
        action="store_true",
        help="instance model: labels hold one value per object; it predicts background, interior "
        "and boundary, and splits touching objects",
    )
    p.add_argument(
        "--boundary-width",
        type=int,
        default=2,
        help="object rim, in pixels, taught as boundary (default 2)",
    )
    p.add_argument(
        "--3d", dest="three_d", action="store_true", help="images are 3D stacks (Z, Y, X)"
    )
    p.add_argument(
        "--channel-axis", type=int, help="axis of the images holding channels (default: guessed)"
    )
    p.add_argument(
        "--gray", action="store_true", help="convert colour images to grayscale (one-channel model)"
    )
    p.add_argument(
        "--input-channel",
        type=int,
        metavar="N",
        help="use only channel N of the images (0-based; e.g. 1, the green channel of RGB "
        "fundus photographs): a one-channel model",
    )
    p.add_argument(
        "--invert",
        choices=("no", "yes", "auto"),
        help="turn intensities upside down: 'auto' for images with a bright background (H&E, "
        "brightfield), so dark nuclei look like fluorescent ones (default no; with --from, "
        "changes how the model reads images and fine-tunes it to that)",
    )
    # Architecture and input options shape a new model; a model given with --from or --resume
    # brings its own, and a value that contradicts it is an error (see _check_model_options).
    p.add_argument("--depth", type=int, help="U-Net depth (default 4)")
    p.add_argument(
        "--base-features",
        type=int,
        help="features at full resolution (default 16 on a CPU, 32 on a GPU; 32 in 3D)",
    )
    p.add_argument("--norm", choices=("batch", "instance", "group", "none"), help="(default batch)")
    p.add_argument("--upsample", choices=("transpose", "interpolate"), help="(default transpose)")
    p.add_argument("--dropout", type=float, help="(default 0)")
    p.add_argument(
        "--encoder",
        choices=("unet", "mobilenet_v2"),
        help="unet (default): the classic double convolutions; mobilenet_v2: torchvision's "
        "MobileNetV2 feature blocks (2D, depth 5, far fewer operations per pixel)",
    )
    p.add_argument(
        "--encoder-weights",
        metavar="FILE",
        help="with --encoder mobilenet_v2: start from torchvision's ImageNet weights saved "
        "as a state-dict file (torch.save(mobilenet_v2(weights=...).state_dict(), FILE)); "
        "nothing is downloaded",
    )
    p.add_argument(
        "--padding",
        choices=("same", "valid"),
        help="same (default): padded convolutions; valid: the U-Net paper's unpadded "
        "convolutions with cropped skips, trained on tile centres and predicted overlap-tile "
        "with mirrored borders (depth 4: a 572 px tile gives 388 px)",
    )
    p.add_argument(
        "--patch-size",
        type=int,
        help="patch edge in pixels (default 128 in 2D on a CPU, 256 on a GPU; 64 in 3D)",
    )
    p.add_argument("--batch-size", type=int, help="patches per step (default 8 in 2D, 2 in 3D)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    p.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        help="cosine: decay the rate to 1%% by the end of the epochs or --minutes "
        "(default constant)",
    )
    p.add_argument("--loss", choices=("ce", "dice", "ce+dice"), default="ce+dice")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    p.add_argument(
        "--elastic", action="store_true", help="add elastic deformations to augmentation"
    )
    p.add_argument(
        "--zoom",
        type=float,
        default=1.0,
        help="add rescaling to augmentation: each patch by a random factor between 1/ZOOM and "
        "ZOOM, for objects whose size varies more than in the labelled images (default 1: none)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--description", default="", help="text stored in the model file")
    p.set_defaults(run=_run_train)


_ARCHITECTURE_OPTIONS = (
    "depth",
    "base_features",
    "norm",
    "upsample",
    "dropout",
    "padding",
    "encoder",
)


def _check_model_options(args: argparse.Namespace, base) -> None:
    """With --from/--resume the model decides its architecture and how it reads images: an
    option that says otherwise is an error, not silently ignored; one that agrees is fine."""
    from .core import UserInputError

    start = "--resume" if args.resume else "--from"
    config, prep = base.config, base.preprocessing
    for name in _ARCHITECTURE_OPTIONS:
        value = getattr(args, name)
        if value is not None and value != getattr(config, name):
            raise UserInputError(
                f"--{name.replace('_', '-')} {value} contradicts the {start} model "
                f"({name.replace('_', ' ')} {getattr(config, name)}): a model keeps its "
                "architecture; drop the option, or train a new model without " + start
            )
    if args.encoder_weights:
        raise UserInputError(
            f"--encoder-weights starts a new model; the {start} model has its weights: drop it"
        )
    reads = {"gray": "as grayscale", "single": f"only channel {prep.channel} of the image"}
    model_reads = reads.get(prep.channel_mode, "the image's channels as they are")
    if args.three_d and config.spatial_dims != 3:
        raise UserInputError(f"--3d contradicts the {start} model, which is 2D")
    if args.gray and prep.channel_mode != "gray":
        raise UserInputError(
            f"--gray contradicts the {start} model, which reads {model_reads}; drop --gray"
        )
    if args.input_channel is not None and (
        prep.channel_mode != "single" or prep.channel != args.input_channel
    ):
        raise UserInputError(
            f"--input-channel {args.input_channel} contradicts the {start} model, which reads "
            f"{model_reads}; drop --input-channel"
        )
    if args.resume and args.invert is not None and args.invert != prep.invert:
        raise UserInputError(
            f"--invert {args.invert} contradicts the --resume model (invert {prep.invert}): "
            "a resumed run reads images as it started; fine-tune with --from instead"
        )


def _load_pairs(
    images: str,
    labels: str,
    args: argparse.Namespace,
    spatial_dims: int,
    preprocessing,
    in_channels,
    label_mode: str,
):
    from .core import UserInputError, io, prepare_pair

    predictions = {}
    if label_mode == "corrections":
        predictions = io.index_folder(args.predictions, args.pattern, "prediction", ("_labels",))
    pairs = []
    for pair in io.find_pairs(images, labels, args.pattern):
        prediction = None
        if label_mode == "corrections":
            if pair.key not in predictions:
                raise UserInputError(
                    f"no prediction for {pair.image.name} in {args.predictions} (expected "
                    f"{pair.key}_labels.tif or {pair.key}.*, as predict writes)"
                )
            prediction = io.read_labels(predictions[pair.key])
        pairs.append(
            prepare_pair(
                io.read_image(pair.image),
                io.read_labels(pair.labels),
                prediction=prediction,
                spatial_dims=spatial_dims,
                preprocessing=preprocessing,
                in_channels=in_channels,
                num_classes=args.classes,
                label_mode=label_mode,
                ignore_value=args.ignore_value,
                channel_axis=args.channel_axis,
                name=pair.image.name,
                task=args.task,
            )
        )
        in_channels = pairs[0].image.shape[0]
    return pairs


def _check_model_out(out: Path, flag: str) -> None:
    """A model file can be written at ``out``: checked before any training, so that a typo or
    a read-only folder is not found after the first epoch."""
    from .core import UserInputError

    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UserInputError(f"{flag} {out} is a folder; give a model file name such as model.pt")
    if not folder.is_dir():
        raise UserInputError(f"{flag} {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UserInputError(
            f"{flag} {out}: cannot write in {folder} (read-only, or no permission)"
        )


def _run_train(args: argparse.Namespace) -> int:
    from .core.train.ddp import device_for, shutdown, world_from_environment

    # Under torchrun: one of several processes (see core/ddp.py); alone otherwise.
    world = world_from_environment(args.device)
    args.device = device_for(world, args.device)
    try:
        return _train(args, world)
    finally:
        shutdown(world)


def _train(args: argparse.Namespace, world) -> int:
    from dataclasses import replace

    from tqdm import tqdm

    from .core import (
        Preprocessing,
        TrainConfig,
        Trainer,
        TrainingDiverged,
        UNetConfig,
        UserInputError,
        load_model,
        save_model,
    )
    from .core.data.safe_paths import refuse_inputs
    from .core.network.devices import describe_device, slow_precision_note
    from .core.train.trainer import KEPT_START

    out = Path(args.out)
    _check_model_out(out, "--out")
    if (
        out.exists()
        and not args.overwrite
        and not (args.resume and Path(args.resume).resolve() == out.resolve())
    ):
        raise UserInputError(
            f"{out} already exists; pass --overwrite to replace it, or continue the training "
            f"it holds with --resume {out} --out {out}"
        )
    folders = [args.images, args.labels, args.val_images, args.val_labels, args.predictions]
    # A model file beside the images is fine; one written over an image or label is not.
    refuse_inputs(
        [out], [f for d in folders if d and Path(d).is_dir() for f in Path(d).iterdir()], "--out"
    )
    if bool(args.val_images) != bool(args.val_labels):
        raise UserInputError("give both --val-images and --val-labels, or neither")
    if (args.label_mode == "corrections") != bool(args.predictions):
        raise UserInputError(
            "--label-mode corrections needs --predictions FOLDER (the predictions the strokes "
            "correct), and --predictions needs --label-mode corrections"
        )
    base = load_model(args.from_model or args.resume) if (args.from_model or args.resume) else None
    if base is not None:
        _check_model_options(args, base)
        dims, preprocessing, in_channels = (
            base.config.spatial_dims,
            base.preprocessing,
            base.config.in_channels,
        )
        if args.invert is not None and args.invert != preprocessing.invert:
            # Fine-tuning to read images another way round: the new model file says so.
            preprocessing = replace(preprocessing, invert=args.invert)
            base = replace(base, preprocessing=preprocessing)
        classes = max(2, base.config.out_channels)
        if args.classes is not None and args.classes != classes:
            raise UserInputError(
                f"the model has {classes} classes but --classes {args.classes} was given"
            )
        args.classes = classes
        args.task = base.task
    else:
        dims = 3 if args.three_d else 2
        if args.gray and args.input_channel is not None:
            raise UserInputError("--gray and --input-channel exclude each other; give one")
        if args.input_channel is not None:
            preprocessing = Preprocessing(channel_mode="single", channel=args.input_channel)
        else:
            preprocessing = Preprocessing(channel_mode="gray" if args.gray else "as_is")
        preprocessing = replace(preprocessing, invert=args.invert or "no")
        in_channels = None
        args.classes = args.classes or 2
        args.task = {"kind": "semantic"}
        if args.instances:
            if args.classes not in (2, 3):
                raise UserInputError(
                    "--instances trains a 3-class model (background, interior, boundary); drop --classes"
                )
            args.classes = 3
            args.task = {"kind": "instances", "boundary_width": args.boundary_width}
    pairs = _load_pairs(
        args.images, args.labels, args, dims, preprocessing, in_channels, args.label_mode
    )
    val_pairs = None
    if args.val_images:
        # Validating on corrections would grade the model on its own prediction: with
        # --label-mode corrections the validation labels are complete (dense) ones.
        val_mode = "dense" if args.label_mode == "corrections" else args.label_mode
        val_pairs = _load_pairs(
            args.val_images,
            args.val_labels,
            args,
            dims,
            preprocessing,
            pairs[0].image.shape[0],
            val_mode,
        )

    overrides = {
        k: v
        for k, v in {
            "epochs": args.epochs,
            "max_minutes": args.minutes,
            "steps_per_epoch": args.steps_per_epoch,
            "batch_size": args.batch_size,
            "patch_size": args.patch_size,
            "learning_rate": args.lr,
            "lr_schedule": args.lr_schedule,
        }.items()
        if v is not None
    }
    if args.minutes is not None and args.epochs is None:
        overrides["epochs"] = 10**6  # the time budget decides
    config = TrainConfig(
        **{
            **overrides,
            "loss": args.loss,
            "val_fraction": args.val_fraction,
            "augment": not args.no_augment,
            "elastic": args.elastic,
            "zoom": args.zoom,
            "seed": args.seed,
            "device": args.device,
        }
    )
    if args.resume:
        if not base.training_state:
            raise UserInputError(
                f"{args.resume} holds no training state to resume from (it was saved without it)"
            )
        # Continue with the saved settings; only what was given on this command line changes.
        saved = {**base.training_state["train_config"], **overrides, "device": args.device}
        trainer = Trainer(
            pairs,
            base,
            TrainConfig.from_dict(saved),
            val_pairs=val_pairs,
            resume=True,
            world=world,
        )
    elif base is not None:
        trainer = Trainer(pairs, base, config, val_pairs=val_pairs, world=world)
    else:
        from .core.train.defaults import training_defaults

        defaults = training_defaults(dims, args.device)  # the widget starts from the same
        if args.encoder == "mobilenet_v2" and args.depth is None:
            args.depth = 5  # its five stride-2 stages
        if args.encoder_weights and args.encoder != "mobilenet_v2":
            raise UserInputError("--encoder-weights needs --encoder mobilenet_v2")
        given = {name: getattr(args, name) for name in _ARCHITECTURE_OPTIONS}
        net = UNetConfig(
            spatial_dims=dims,
            in_channels=pairs[0].image.shape[0],
            out_channels=args.classes,
            **{
                "depth": defaults.depth,
                "base_features": defaults.base_features,
                **{name: value for name, value in given.items() if value is not None},
            },
        )
        plan = None
        if args.minutes is not None and not args.no_plan:
            net, config, plan = _plan(args, pairs, val_pairs, net, config, world)
        trainer = Trainer(
            pairs,
            net,
            config,
            preprocessing=preprocessing,
            val_pairs=val_pairs,
            task=args.task,
            world=world,
            plan=plan,
        )
        if args.encoder_weights:
            loaded = trainer.load_encoder_weights(args.encoder_weights)
            print(f"encoder: {len(loaded)} tensors from {args.encoder_weights}", file=sys.stderr)
    if not world.is_main:
        return _train_quietly(trainer)
    if world.distributed:
        print(
            f"world size {world.size} ({world.backend}): each process draws its own "
            f"{trainer.batch_size} patches a step ({trainer.batch_size * world.size} in all); "
            "gradients are averaged; this process (rank 0) validates and writes the model",
            file=sys.stderr,
        )
    print(
        f"training on {len(trainer.train_pairs)} image(s), {trainer.validation_summary}; "
        f"device {describe_device(trainer.device)}; patches {trainer.patch_size} x {trainer.batch_size}; "
        f"{trainer.steps_per_epoch} steps per epoch",
        file=sys.stderr,
    )
    if note := slow_precision_note(trainer.device, trainer.config.precision):
        print(note, file=sys.stderr)

    def save() -> None:
        model = trainer.model_file()
        model.description = args.description or model.description
        save_model(model, out)

    total = None if config.max_minutes and args.epochs is None else trainer.total_steps
    bar = tqdm(
        total=total,
        initial=trainer.state.step,
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=None,  # no bar when stderr is not a terminal; epoch lines still print
    )
    generator = trainer.train()
    interrupted: str | bool = False
    started = False
    diverged = lost = None
    try:
        for progress in generator:
            if not started:  # a fine-tune scored its starting weights before step 1
                started = True
                if trainer.start_score is not None:
                    bar.write(
                        f"starting model: val {trainer.score_name} {_fmt(trainer.start_score)}",
                        file=sys.stderr,
                    )
            bar.update(1)
            postfix = {"loss": f"{progress.train_loss:.4f}"}
            if progress.best_score is not None and trainer.val_pairs:
                postfix["best"] = f"{progress.best_score:.4f}"
            bar.set_postfix(postfix, refresh=False)
            if progress.epoch_end:
                save()
                bar.write(
                    f"epoch {progress.epoch}: loss {progress.train_loss:.4f}, val loss {_fmt(progress.val_loss)}, "
                    f"val {trainer.score_name} {_fmt(progress.val_score)}{'  (best, saved)' if progress.improved else ''}",
                    file=sys.stderr,  # progress goes to stderr; stdout stays for results
                )
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated): save, then stop
        interrupted = "terminated (SIGTERM)" if isinstance(err, Terminated) else "stopped"
    except TrainingDiverged as err:
        diverged = err  # the trainer is back on its best finite weights: save those
    except RuntimeError as err:
        if not world.distributed:
            raise
        lost = err  # another process died mid-step: this one's weights are the last step's
    finally:
        generator.close()
        bar.close()
    save()
    if diverged is not None:
        raise TrainingDiverged(f"{diverged}; saved to {out}") from diverged
    if lost is not None:
        raise UserInputError(
            f"another training process stopped ({str(lost).splitlines()[0][:160]}); the model "
            f"after step {trainer.state.step} is saved to {out}: continue with --resume {out}"
        ) from lost
    best = trainer.state.best_score
    print(
        f"{interrupted or 'done'} after {trainer.state.step} steps, {trainer.state.seconds:.0f} s; "
        f"best validation {trainer.score_name} {_fmt(best) if trainer.val_pairs else '- (no validation data)'}"
        f"{'; ' + KEPT_START if trainer.kept_start else ''}; model saved to {out}"
        f"{f'; continue with --resume {out}' if interrupted else ''}",
        file=sys.stderr,
    )
    if interrupted:
        return EXIT_TERMINATED if interrupted.startswith("terminated") else EXIT_INTERRUPTED
    return 0


_PLANNED = ("depth", "base_features", "patch_size", "batch_size")


def _plan(args: argparse.Namespace, pairs, val_pairs, net, config, world):
    """Plan the settings left open for --minutes (core/planner.py): the network, the config
    with the rest of the budget after planning, and the plan to store; unchanged when the
    user set them all, or in a distributed run (whose processes must agree on one network)."""
    from .core.train.planner import plan_for_budget

    fixed = {name: getattr(args, name) for name in _PLANNED if getattr(args, name) is not None}
    if len(fixed) == len(_PLANNED):
        return net, config, None
    if world.distributed:
        if world.is_main:
            print("--minutes with torchrun: the default settings (no planning)", file=sys.stderr)
        return net, config, None
    print("planning the network and patch size for the time budget…", file=sys.stderr)
    net, config, plan = plan_for_budget(
        pairs, net, config, task=args.task, fixed=fixed, validation_given=bool(val_pairs)
    )
    print(plan.summary(), file=sys.stderr)
    return net, config, plan.to_dict()


def _train_quietly(trainer) -> int:
    """A rank other than 0 of a distributed run: the same steps, without output or files."""
    generator = trainer.train()
    try:
        for _ in generator:
            pass
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        generator.close()
    return 0


# ---------------------------------------------------------------- predict


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment image files or folders with a model",
        description="Segment images; writes <name>_labels.tif (and <name>_probabilities.tif) per image.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="image files (TIFF, PNG, JPEG, ...; .zarr arrays with the zarr package) and/or folders",
    )
    p.add_argument(
        "--model",
        required=True,
        help="model file, bundled model name (see `napari-unet info`) or bioimage.io package "
        "(folder or .zip)",
    )
    p.add_argument(
        "--trust-code",
        action="store_true",
        help="allow a bioimage.io package whose only weights need its own Python code to run it",
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument(
        "--output",
        choices=("semantic", "instances", "probabilities"),
        help="semantic: class per pixel; instances: one label per object; probabilities: the "
        "class mask and the probabilities (default: what suits the model, as in napari: "
        "instances for instance models, probabilities for one-class models such as vessels, "
        "else semantic; `napari-unet info MODEL` says which)",
    )
    p.add_argument(
        "--probabilities", action="store_true", help="also write class probabilities (float32 TIFF)"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="foreground probability threshold (binary models)",
    )
    p.add_argument(
        "--min-size", type=int, default=0, help="smallest object kept in instance output, in pixels"
    )
    p.add_argument(
        "--seed-threshold",
        type=float,
        default=0.5,
        help="interior probability that seeds an object (instance models; lower finds more objects)",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 flips and rotations (8x slower)",
    )
    p.add_argument(
        "--channel-axis", type=int, help="axis of the images holding channels (default: guessed)"
    )
    p.add_argument(
        "--tile-size",
        type=int,
        help="tile edge in pixels (default: the whole image when it fits 1536x1536 pixels "
        "(128^3 voxels), else windows of at most 1024^2 (112^3) cut for the least work)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--format",
        choices=("tif", "ome-zarr"),
        default="tif",
        help="tif: <name>_labels.tif; ome-zarr: <name>_labels.ome.zarr (and "
        "<name>_probabilities.ome.zarr) with the input's axes and pixel sizes",
    )
    p.add_argument(
        "--into-input",
        action="store_true",
        help="OME-Zarr inputs: write the labels into the input's labels/ group (NGFF labels), "
        "where napari shows them over the image",
    )
    p.add_argument(
        "--label-name", default="napari-unet", help="name of the labels written by --into-input"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--cluster",
        metavar="WHERE",
        help="run on a Dask cluster: local:N (N worker processes here), tcp://HOST:PORT (a "
        "running scheduler) or SCHEDULER.json; one task per file, and images larger than a "
        "block cut into blocks written into <name>_labels.ome.zarr (needs the distributed extra)",
    )
    p.add_argument(
        "--block-size",
        type=int,
        help="--cluster: block edge in pixels for big images (default: one network window's "
        "core, about 1024 in 2D and 112 in 3D)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="--cluster: torch threads per worker (default: local:N shares this machine's "
        "cores; elsewhere torch's default)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="--cluster: continue an interrupted run, skipping the blocks and files it finished",
    )
    p.set_defaults(run=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from .core import Segmenter, StackProgress, UserInputError
    from .core.network.devices import slow_precision_note
    from .core.predict.batch import plan_jobs, predict_file

    files = _inputs_to_segment(args.inputs)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserInputError(f"--out {out_dir} exists and is not a folder")
    if args.cluster:
        return _run_predict_on_cluster(args, files, out_dir)
    if args.resume:
        raise UserInputError("--resume continues an interrupted --cluster run; add --cluster")
    segmenter = Segmenter(args.model, device=args.device, trust_code=args.trust_code)
    output = args.output or segmenter.model_file.suggested_output
    jobs = plan_jobs(
        files,
        out_dir,
        probabilities=args.probabilities or output == "probabilities",
        format=args.format,
        into_input=args.into_input,
        label_name=args.label_name,
        overwrite=args.overwrite,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"model {args.model} on {segmenter.device_name}; {len(files)} image(s) -> {out_dir}; "
        f"output {output}{'' if args.output else ' (suits the model; --output to change)'}",
        file=sys.stderr,
    )
    if note := slow_precision_note(segmenter.device, segmenter.precision):
        print(note, file=sys.stderr)
    options = _predict_options(args, output, jobs)
    for job in jobs:
        with _file_bar(job.path.name) as bar:

            def report(p, bar=bar):
                if isinstance(p, StackProgress):  # tiles of all slices in one bar
                    bar.total = p.blocks * p.tile.total
                    bar.n = p.block * p.tile.total + p.tile.done
                else:
                    bar.total = p.total
                    bar.n = p.done
                bar.refresh()

            summary = predict_file(
                segmenter,
                job,
                options,
                channel_axis=args.channel_axis,
                progress=report,
                note=lambda line: print(line, file=sys.stderr),
            )
        print(summary, file=sys.stderr)
    return 0


def _inputs_to_segment(inputs: list[str]) -> list[Path]:
    """The image files named or found in folders, less the labels and probabilities of other
    inputs (an earlier run's outputs are never segmented as images)."""
    from .core import UserInputError, io
    from .core.predict.batch import split_outputs_from_inputs

    files, skipped = split_outputs_from_inputs(io.list_images(inputs))
    if skipped:
        names = ", ".join(p.name for p in skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        print(
            f"skipping {len(skipped)} file(s) that are labels or probabilities of other inputs "
            f"({names})",
            file=sys.stderr,
        )
    if not files:
        raise UserInputError(
            f"no images to segment in {', '.join(inputs)}: only labels or probabilities files"
        )
    return files


def _predict_options(args: argparse.Namespace, output: str, jobs) -> dict:
    return {
        "output": output,
        "keep_probabilities": any(j.probabilities is not None for j in jobs),
        "threshold": args.threshold,
        "tile_size": args.tile_size,
        "batch_size": args.batch_size,
        "min_size": args.min_size,
        "seed_threshold": args.seed_threshold,
        "test_time_augmentation": args.tta,
    }


def _file_bar(name: str):
    from tqdm import tqdm

    return tqdm(
        desc=name, unit="tile", file=sys.stderr, dynamic_ncols=True, leave=False, disable=None
    )


def _run_predict_on_cluster(args: argparse.Namespace, files: list[Path], out_dir: Path) -> int:
    """``predict --cluster``: the same outputs, computed by Dask workers (core/cluster.py)."""
    from tqdm import tqdm

    from .core import Segmenter, UserInputError
    from .core.cluster.dask_prediction import ModelKey, connect, plan_cluster_run
    from .core.predict.batch import plan_jobs

    model = args.model
    if Path(model).exists():  # workers elsewhere read it at the same (shared) path
        model = str(Path(model).resolve())
    segmenter = Segmenter(model, device="cpu", precision="float32", trust_code=args.trust_code)
    output = args.output or segmenter.model_file.suggested_output
    if args.resume and args.overwrite:
        raise UserInputError("--resume keeps what an interrupted run wrote; drop --overwrite")
    jobs = plan_jobs(
        files,
        out_dir,
        probabilities=args.probabilities or output == "probabilities",
        format=args.format,
        into_input=args.into_input,
        label_name=args.label_name,
        overwrite=args.overwrite or args.resume,
    )
    threads = args.threads
    if threads is None and args.cluster.startswith("local:"):
        workers = args.cluster.removeprefix("local:")
        threads = max(1, (os.cpu_count() or 1) // max(1, int(workers) if workers.isdigit() else 1))
    key = ModelKey(model, args.device, "auto", args.trust_code, threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = plan_cluster_run(
        jobs,
        key,
        _predict_options(args, output, jobs),
        channel_axis=args.channel_axis,
        block_size=args.block_size,
        resume=args.resume,
    )
    blocked = ", ".join(
        f"{Path(i.path).name} in {i.count} blocks of {'x'.join(map(str, i.blocks))}"
        for i in run.images
    )
    client = connect(args.cluster, threads)
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        print(
            f"model {args.model}; {len(files)} image(s) -> {out_dir}; output {output}; "
            f"Dask cluster {args.cluster} ({workers} worker(s)): {len(run.files)} file task(s)"
            f"{'; ' + blocked + ' (written as OME-Zarr)' if blocked else ''}",
            file=sys.stderr,
        )
        with tqdm(unit="task", file=sys.stderr, dynamic_ncols=True, disable=None) as bar:
            for done, total in run.submit(client):
                bar.total = total
                bar.n = done
                bar.refresh()
    finally:
        client.close()
        cluster = getattr(client, "cluster", None)
        if cluster is not None and args.cluster.startswith("local:"):
            cluster.close()
    for line in run.summaries:
        print(line, file=sys.stderr)
    print(f"{len(run.pids)} worker process(es) did the work", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- evaluate


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
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

    from .core.train.targets import check_labels

    labels = check_labels(labels, "labels")
    return (labels > 0).astype(np.int64) if classes <= 2 else labels.astype(np.int64)


def _run_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .core import MetricAccumulator, UserInputError, io
    from .core.metrics import METRIC_NAMES

    truth = io.index_folder(args.truth, args.pattern, "truth")

    def is_prob(path: Path) -> bool:
        return path.name[: -len(path.suffix)].endswith("_probabilities")

    pred_dir = Path(args.pred)
    if not pred_dir.is_dir():
        raise UserInputError(f"prediction folder {pred_dir} does not exist")
    found = [p for p in pred_dir.iterdir() if io.is_image_file(p)]
    labels = probs = {}
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
    _check_reports(
        args, [p for index in (truth, labels, probs, masks or {}) for p in index.values()]
    )
    if args.instances:
        if not labels:
            raise UserInputError(
                "object scores need label predictions (<name>_labels.tif), not probabilities"
            )
        return _evaluate_instances(truth, labels, args)
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

    names = [m for m in METRIC_NAMES if any(not math.isnan(r.get(m, float("nan"))) for r in rows)]
    width = max(len("image"), *(len(r["image"]) for r in rows))
    header = f"{'image':<{width}}  class  " + "  ".join(f"{n:>11}" for n in names)
    print(header)
    for r in rows:
        if r["image"] == "POOLED":
            print("-" * len(header)) if r["class"] == "1" else None
        print(
            f"{r['image']:<{width}}  {r['class']:>5}  "
            + "  ".join(f"{_fmt(r.get(n)):>11}" for n in names)
        )
    _write_reports(
        args,
        ["image", "class", *METRIC_NAMES],
        rows,
        {"images": [r for r in rows if r["image"] != "POOLED"], "pooled": pooled},
    )
    return 0


def _check_reports(args: argparse.Namespace, inputs: list[Path]) -> None:
    """--csv / --json: refused before any work when they exist (without --overwrite), name the
    same file, or name one of the files this evaluation reads."""
    from .core import UserInputError
    from .core.data.safe_paths import refuse_inputs

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

    from .core.data.io import atomic_write

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
    from .core import UserInputError, io
    from .core.predict.instances import InstanceAccumulator
    from .core.train.targets import check_labels

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
            print(f"{r['image']:<{width}}  " + "  ".join(f"{_fmt(r[n]):>20}" for n in names[:5]))
    print(f"\npooled over {len(truth)} image(s)")
    print("IoU threshold  " + "  ".join(f"{n:>16}" for n in names))
    for t, m in pooled.items():
        print(f"{t:>13.2f}  " + "  ".join(f"{_fmt(m[n]):>16}" for n in names))
    _write_reports(
        args,
        ["image", "iou_threshold", *names],
        rows + [{"image": "POOLED", "iou_threshold": t, **m} for t, m in pooled.items()],
        {"images": rows, "pooled": {str(t): m for t, m in pooled.items()}},
    )
    return 0


# ---------------------------------------------------------------- info / import / demo


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a model file (or list the bundled models)")
    p.add_argument(
        "model", nargs="?", help="model file or bundled model name; omit to list bundled models"
    )
    p.set_defaults(run=_run_info)


def describe_model(spec: str) -> str:
    """A multi-line, human-readable description of a model file or bioimage.io package."""
    from .core import bundled_models, load_model
    from .core.models.model_file import resolve_model_path

    if spec not in bundled_models():
        from .core.interop.bioimageio_import import describe_package
        from .core.interop.bioimageio_spec import is_package

        if is_package(spec):
            return "\n".join(describe_package(spec))
    path = resolve_model_path(spec)
    m = load_model(path)
    c, pp = m.config, m.preprocessing
    params = sum(
        v.numel()
        for k, v in m.weights.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    lines = [
        f"model:          {path} ({path.stat().st_size / 1e6:.1f} MB)",
        *([f"description:    {m.description}"] if m.description else []),
        f"architecture:   {c.spatial_dims}D U-Net, depth {c.depth}, {c.base_features} base features, {c.norm} norm, "
        f"{c.upsample} upsampling, dropout {c.dropout}, "
        + (
            f"valid padding (the paper's geometry: {c.valid_margin} px margin)"
            if c.padding == "valid"
            else "same padding"
        )
        + (", MobileNetV2 encoder" if c.encoder == "mobilenet_v2" else "")
        + f"; {params:,} parameters",
        f"input:          {c.in_channels} channel(s), "
        + {"as_is": "channels as they are", "gray": "colour turned to gray"}.get(
            pp.channel_mode, f"only channel {pp.channel} of the image"
        )
        + f", {pp.norm} normalisation"
        + (f" ({pp.low}-{pp.high} percentiles)" if pp.norm == "percentile" else ""),
        f"classes:        {', '.join(m.class_names)}",
        "task:           "
        + (
            f"instances (boundary width {m.task.get('boundary_width')}; seeded watershed)"
            if m.is_instance_model
            else "semantic (class per pixel)"
        ),
    ]
    for i, run in enumerate(m.history.get("runs", []), 1):
        cfg = run.get("config", {})
        lines.append(
            f"training run {i}: {run.get('steps')} steps, {run.get('seconds')} s on {run.get('device')}, "
            f"{_count(run.get('train_images'))} training / {_count(run.get('val_images'))} validation image(s), "
            f"best validation {run.get('score', 'score')} {_fmt(run.get('best_score'))}, lr {cfg.get('learning_rate')}, loss {cfg.get('loss')}, "
            f"finished {run.get('finished')}"
        )
        if run.get("plan"):
            from .core.train.planner import describe_plan

            lines.append(f"  planned:      {describe_plan(run['plan'])}")
    if "imported_from" in m.history:
        lines.append(f"imported from:  {m.history['imported_from']}")
    lines.append(f"resumable:      {'yes' if m.training_state else 'no'}")
    return "\n".join(lines)


def _count(value: object) -> object:
    """Image lists count their entries; packages store the count itself."""
    return len(value) if isinstance(value, (list, tuple)) else (value if value is not None else 0)


def _run_info(args: argparse.Namespace) -> int:
    from .core import bundled_models

    if args.model:
        print(describe_model(args.model))
        return 0
    bundled = bundled_models()
    if not bundled:
        print("no bundled models")
    for name, path in bundled.items():
        card = path.with_suffix(".md")
        summary = card.read_text().splitlines()[0].lstrip("# ") if card.exists() else ""
        print(f"{name:<12} {summary}")
    return 0


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="wrap a plain PyTorch state_dict and its config into a model file"
    )
    p.add_argument("--weights", required=True, help="file with the state_dict (torch.save)")
    p.add_argument(
        "--config",
        required=True,
        help="JSON file: U-Net config keys, optionally with 'preprocessing' and 'class_names'",
    )
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    from .core import Preprocessing, UNetConfig, UserInputError, import_state_dict, save_model
    from .core.data.safe_paths import refuse_inputs

    out = Path(args.out)
    refuse_inputs([out], [Path(args.weights), Path(args.config)], "--out")
    if out.exists() and not args.overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")
    _check_model_out(out, "--out")
    try:
        spec = json.loads(Path(args.config).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserInputError(f"cannot read config {args.config}: {err}") from err
    if not isinstance(spec, dict):
        raise UserInputError(f"config {args.config} must hold a JSON object")
    preprocessing = Preprocessing.from_dict(spec.pop("preprocessing", {}))
    class_names = spec.pop("class_names", None)
    model = import_state_dict(args.weights, UNetConfig.from_dict(spec), preprocessing, class_names)
    save_model(model, out)
    print(f"imported {args.weights} -> {out}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as a bioimage.io package, TorchScript or ONNX",
        description="bioimageio: a bioimage.io model package (format 0.5; .zip or folder) with "
        "torchscript, onnx and pytorch_state_dict weights, test tensors, cover and documentation, "
        "for deepImageJ, ilastik, QuPath and bioimage.io's tools. torchscript / onnx: the bare "
        "network (normalised image in, probabilities out; spatial sizes multiples of 2**depth) "
        "with its metadata, for scripts and onnxruntime.",
    )
    p.add_argument("model", help="model file or bundled model name")
    p.add_argument(
        "out", help="file or folder to write (nuclei.zip, nuclei.onnx, nuclei.torchscript.pt)"
    )
    p.add_argument("--format", required=True, choices=("bioimageio", "torchscript", "onnx"))
    p.add_argument(
        "--sample",
        help="bioimageio: an image the test tensors and cover are cut from (default: the "
        "bundled nuclei image; 3D models need one)",
    )
    p.add_argument(
        "--author", action="append", help="bioimageio: an author's name (repeat for several)"
    )
    p.add_argument("--license", default="CC-BY-4.0", help="bioimageio: SPDX licence id")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from .core import UserInputError, bundled_models, load_model
    from .core.data.safe_paths import refuse_inputs
    from .core.interop.network_export import export_metadata, export_network

    out = Path(args.out)
    sources = [Path(p) for p in (args.model, args.sample) if p and Path(p).exists()]
    refuse_inputs([out], sources, "OUT")
    if out.exists() and not args.overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it")
    model = load_model(args.model)
    if args.format == "bioimageio":
        from .core import io
        from .core.interop.bioimageio_export import export_package, package_sizes

        sample = io.read_image(args.sample) if args.sample else None
        name = args.model if args.model in bundled_models() else None
        export_package(
            model, out, name=name, sample=sample, authors=args.author, license=args.license,
            overwrite=args.overwrite,
        )  # fmt: skip
        minimum, step, halo = package_sizes(model)
        print(
            f"exported {args.model} as a bioimage.io package to {out}: torchscript, onnx and "
            f"pytorch_state_dict weights; input sides {minimum} + n x {step}, halo {halo}; "
            f"check it with `bioimageio test {out}`"
        )
        return 0
    if args.sample or args.author:
        raise UserInputError("--sample and --author apply to --format bioimageio only")
    export_network(model, out, args.format)
    meta = export_metadata(model)
    print(
        f"exported {args.model} as {args.format} to {out}: input {meta['input']['axes']} float32 "
        f"with {meta['input']['channels']} channel(s), spatial sizes multiples of "
        f"{meta['input']['spatial_size_multiple']}, normalised as "
        f"{json.dumps(meta['input']['preprocessing'])}; output {meta['output']['channels']} "
        f"probability channel(s) {meta['class_names']}"
    )
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="segment the bundled sample image with the bundled nuclei model and score it"
    )
    p.add_argument(
        "--out", default="napari-unet-demo", help="output folder (default ./napari-unet-demo)"
    )
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .core import MetricAccumulator, Segmenter, io
    from .core.predict.instances import InstanceAccumulator
    from .samples import sample_path

    image_path, truth_path = sample_path("nuclei"), sample_path("nuclei_labels")
    image = io.read_image(image_path)
    segmenter = Segmenter("nuclei", device=args.device)
    result = segmenter.predict(image, output="instances", min_size=10)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    io.write_image(out / "nuclei_labels.tif", result.labels, overwrite=True)
    truth = io.read_labels(truth_path)
    report = MetricAccumulator(2).add(
        (result.labels > 0).astype(np.int64), (truth > 0).astype(np.int64)
    )["1"]
    objects = InstanceAccumulator((0.5,)).add(result.labels, truth)[0.5]
    print(f"image {image_path.name} {image.shape}, model 'nuclei' on {result.device}")
    print(
        f"found {int(result.labels.max())} nuclei (ground truth: {int(truth.max())}); "
        f"objects matched at IoU 0.5: F1 {objects['f1']:.3f}, mean IoU {objects['mean_matched_iou']:.3f}; "
        f"foreground Dice {report['dice']:.3f}"
    )
    print(
        f"labels written to {out / 'nuclei_labels.tif'}; open them in napari beside the image, "
        f"or run `napari-unet predict --model nuclei YOUR_IMAGES --out OUT`"
    )
    return 0


# ---------------------------------------------------------------- entry point


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one ``napari-unet: error:`` line and exit status 2, like
    every other refusal (argparse prints its usage block first)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(
            EXIT_USER_ERROR,
            f"napari-unet: error: {message} (see `{self.prog} --help`)\n",
        )


# Options whose core setting (core/limits.py) has another name.
_LIMIT_NAMES = {"minutes": "max_minutes", "lr": "learning_rate"}
_LIMIT_NAMES_BY_COMMAND = {
    ("predict", "batch_size"): "predict_batch_size",
    ("evaluate", "classes"): "evaluate_classes",
}


def check_numbers(args: argparse.Namespace) -> None:
    """Every number given on the command line is finite and in its range (core/limits.py),
    checked before any work starts."""
    from .core.limits import LIMITS, check

    for dest, value in vars(args).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        name = _LIMIT_NAMES_BY_COMMAND.get((args.command, dest)) or _LIMIT_NAMES.get(dest, dest)
        if name in LIMITS:
            check(name, value, "--" + dest.replace("_", "-"))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="napari-unet", description="U-Net segmentation from the command line.")
    parser.add_argument("--version", action="version", version=f"napari-unet-torch {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_train, _add_predict, _add_evaluate, _add_info, _add_import, _add_export, _add_demo
    ):  # fmt: skip
        add(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM, Kubernetes and ``kill`` send): stopped as Ctrl-C stops, with
    training saved, then exit status 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _os_error_line(err: OSError) -> str:
    """One line for an error of the file system, naming the file and what to do."""
    import errno

    where = f" {err.filename}" if err.filename else ""
    reasons = {
        errno.ENAMETOOLONG: "the file name is too long for this file system; choose a shorter one",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder; give a file name",
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
        errno.ENOENT: "no such file or folder",
        errno.EEXIST: "it already exists",
    }
    reason = reasons.get(err.errno, err.strerror or str(err))
    return f"cannot use{where}: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 internal error, 2 bad input, 130
    interrupted, 143 terminated by SIGTERM, 141 when the reader of its output went away)."""
    import signal
    import threading

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a malformed command line (one line)
        return done.code if isinstance(done.code, int) else EXIT_USER_ERROR
    from .core.errors import UserInputError

    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print escaped
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    else:
        previous = None
    try:
        check_numbers(args)
        status = args.run(args)
        sys.stdout.flush()  # a full disk or a closed pipe on stdout shows here, not at exit
        return status
    except BrokenPipeError:
        # `napari-unet evaluate ... | head -1`: the reader has all it wanted. Quiet, as Unix
        # tools are; stdout goes to /dev/null so that Python's exit flush does not complain.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UserInputError as err:
        if args.debug:
            raise
        print(f"napari-unet: error: {_one_line(str(err))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        print("napari-unet: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("napari-unet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(
            "napari-unet: error: out of memory; use a smaller --tile-size / --batch-size / --patch-size",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except OSError as err:  # the file system said no: the user's to fix, not a bug
        if args.debug:
            raise
        if err.errno is not None:
            if _stdout_failed(err):
                print(
                    "napari-unet: error: cannot write to standard output: "
                    + _os_error_line(err).split(": ", 1)[-1],
                    file=sys.stderr,
                )
            else:
                print(f"napari-unet: error: {_os_error_line(err)}", file=sys.stderr)
            return EXIT_USER_ERROR
        return _internal_error(err)
    except Exception as err:  # a bug: one line, with the way to see more
        if args.debug:
            raise
        return _internal_error(err)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stdout_failed(err: OSError) -> bool:
    return err.filename is None and not sys.stdout.isatty() and err.errno in (28, 122)


def _internal_error(err: BaseException) -> int:
    print(
        f"napari-unet: internal error: {type(err).__name__}: {_one_line(str(err))} "
        "(run with --debug for the traceback)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL


def _one_line(text: str) -> str:
    """Messages are one line: a wrapped one (YAML's, pydantic's) is joined back."""
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
