"""``napari-unet train``: train or fine-tune a U-Net on folders of image/label pairs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    check_model_out,
    fmt,
)
from .train_options import ARCHITECTURE_OPTIONS, declare


def add_parser(sub: argparse._SubParsersAction) -> None:
    declare(sub).set_defaults(run=_run_train)


def _check_model_options(args: argparse.Namespace, base) -> None:
    """With --from/--resume the model decides its architecture and how it reads images: an
    option that says otherwise is an error, not silently ignored; one that agrees is fine."""
    from ..core import UserInputError

    start = "--resume" if args.resume else "--from"
    config, prep = base.config, base.preprocessing
    for name in ARCHITECTURE_OPTIONS:
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
    from ..core import UserInputError, io, prepare_pair
    from ..core.data.pixel_size import file_pixel_size

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
                pixel_size=file_pixel_size(pair.image, spatial_dims),
            )
        )
        in_channels = pairs[0].image.shape[0]
    return pairs


def _run_train(args: argparse.Namespace) -> int:
    from ..core.train.ddp import device_for, shutdown, world_from_environment

    # Under torchrun: one of several processes (see core/train/ddp.py); alone otherwise.
    world = world_from_environment(args.device)
    args.device = device_for(world, args.device)
    try:
        return _train(args, world)
    finally:
        shutdown(world)


def _train(args: argparse.Namespace, world) -> int:
    """``napari-unet train``: check the outputs, read the data, build the trainer, train."""
    out = _checked_out(args)
    base, dims, preprocessing, in_channels = _starting_point(args)
    pairs = _load_pairs(
        args.images, args.labels, args, dims, preprocessing, in_channels, args.label_mode
    )
    val_pairs = None
    if args.val_images:
        # Validating on corrections would grade the model on its own prediction: with
        # --label-mode corrections the validation labels are complete (dense) ones.
        val_mode = "dense" if args.label_mode == "corrections" else args.label_mode
        val_pairs = _load_pairs(
            args.val_images, args.val_labels, args, dims, preprocessing,
            pairs[0].image.shape[0], val_mode,
        )  # fmt: skip
    trainer = _make_trainer(args, base, dims, preprocessing, pairs, val_pairs, world)
    if not world.is_main:
        return _train_quietly(trainer)
    _announce(trainer, world)
    return _run_training(args, trainer, out, world)


def _checked_out(args: argparse.Namespace) -> Path:
    """--out, checked before anything is read: writable, not an input, not replaced unasked;
    and the options that must come in pairs."""
    from ..core import UserInputError
    from ..core.data.safe_paths import refuse_inputs

    out = Path(args.out)
    check_model_out(out, "--out")
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
    return out


def _starting_point(args: argparse.Namespace):
    """(model to start from or None, spatial dims, preprocessing, input channels or None);
    sets ``args.classes`` and ``args.task`` from the model or the options."""
    from dataclasses import replace

    from ..core import Preprocessing, UserInputError, load_model

    start = args.from_model or args.resume
    if start:
        base = load_model(start)
        _check_model_options(args, base)
        preprocessing = base.preprocessing
        if args.invert is not None and args.invert != preprocessing.invert:
            # Fine-tuning to read images another way round: the new model file says so.
            preprocessing = replace(preprocessing, invert=args.invert)
            base = replace(base, preprocessing=preprocessing)
        classes = max(2, base.config.out_channels)
        if args.classes is not None and args.classes != classes:
            raise UserInputError(
                f"the model has {classes} classes but --classes {args.classes} was given"
            )
        args.classes, args.task = classes, base.task
        return base, base.config.spatial_dims, preprocessing, base.config.in_channels
    if args.gray and args.input_channel is not None:
        raise UserInputError("--gray and --input-channel exclude each other; give one")
    if args.input_channel is not None:
        preprocessing = Preprocessing(channel_mode="single", channel=args.input_channel)
    else:
        preprocessing = Preprocessing(channel_mode="gray" if args.gray else "as_is")
    preprocessing = replace(preprocessing, invert=args.invert or "no")
    args.classes = args.classes or 2
    args.task = {"kind": "semantic"}
    if args.instances:
        if args.classes not in (2, 3):
            raise UserInputError(
                "--instances trains a 3-class model (background, interior, boundary); drop --classes"
            )
        args.classes = 3
        args.task = {"kind": "instances", "boundary_width": args.boundary_width}
    return None, 3 if args.three_d else 2, preprocessing, None


def _config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings given on the command line (a resumed run keeps the rest)."""
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
    return overrides


def _make_trainer(args, base, dims, preprocessing, pairs, val_pairs, world):
    """The Trainer: resuming ``base``, fine-tuning it, or a new network (planned for a time
    budget when asked)."""
    from ..core import TrainConfig, Trainer, UNetConfig, UserInputError

    overrides = _config_overrides(args)
    config = TrainConfig(
        **overrides, loss=args.loss, val_fraction=args.val_fraction,
        augment=not args.no_augment, elastic=args.elastic, zoom=args.zoom, seed=args.seed,
        low_resolution=args.low_resolution, device=args.device,
    )  # fmt: skip
    if args.resume:
        if not base.training_state:
            raise UserInputError(
                f"{args.resume} holds no training state to resume from (it was saved without it)"
            )
        # Continue with the saved settings; only what was given on this command line changes.
        saved = {**base.training_state["train_config"], **overrides, "device": args.device}
        return Trainer(
            pairs, base, TrainConfig.from_dict(saved), val_pairs=val_pairs, resume=True,
            world=world,
        )  # fmt: skip
    if base is not None:
        return Trainer(pairs, base, config, val_pairs=val_pairs, world=world)
    from ..core.train.defaults import training_defaults

    defaults = training_defaults(dims, args.device)  # the widget starts from the same
    if args.encoder == "mobilenet_v2" and args.depth is None:
        args.depth = 5  # its five stride-2 stages
    if args.encoder_weights and args.encoder != "mobilenet_v2":
        raise UserInputError("--encoder-weights needs --encoder mobilenet_v2")
    given = {name: getattr(args, name) for name in ARCHITECTURE_OPTIONS}
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
        pairs, net, config, preprocessing=preprocessing, val_pairs=val_pairs, task=args.task,
        world=world, plan=plan,
    )  # fmt: skip
    if args.encoder_weights:
        loaded = trainer.load_encoder_weights(args.encoder_weights)
        print(f"encoder: {len(loaded)} tensors from {args.encoder_weights}", file=sys.stderr)
    return trainer


def _announce(trainer, world) -> None:
    """What is about to happen, on stderr (stdout stays for results)."""
    from ..core.network.devices import describe_device, slow_precision_note

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


def _run_training(args: argparse.Namespace, trainer, out: Path, world) -> int:
    """Train with a progress bar, saving after every epoch and whenever training stops
    (Ctrl-C, SIGTERM, divergence, a lost process); the last line says what happened."""
    from tqdm import tqdm

    from ..core import TrainingDiverged, UserInputError, save_model

    def save() -> None:
        model = trainer.model_file()
        model.description = args.description or model.description
        save_model(model, out)

    timed = args.minutes is not None and args.epochs is None
    bar = tqdm(
        total=None if timed else trainer.total_steps, initial=trainer.state.step, unit="step",
        file=sys.stderr, dynamic_ncols=True,
        disable=None,  # no bar when stderr is not a terminal; epoch lines still print
    )  # fmt: skip
    generator = trainer.train()
    interrupted = ""
    diverged = lost = None
    try:
        _follow(generator, trainer, bar, save)
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
    _summary(trainer, out, interrupted)
    if interrupted:
        return EXIT_TERMINATED if interrupted.startswith("terminated") else EXIT_INTERRUPTED
    return 0


def _follow(generator, trainer, bar, save) -> None:
    """Advance the bar each step; save and print a line at the end of each epoch."""
    started = False
    for progress in generator:
        if not started:  # a fine-tune scored its starting weights before step 1
            started = True
            if trainer.start_score is not None:
                bar.write(
                    f"starting model: val {trainer.score_name} {fmt(trainer.start_score)}",
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
                f"epoch {progress.epoch}: loss {progress.train_loss:.4f}, val loss {fmt(progress.val_loss)}, "
                f"val {trainer.score_name} {fmt(progress.val_score)}{'  (best, saved)' if progress.improved else ''}",
                file=sys.stderr,  # progress goes to stderr; stdout stays for results
            )


def _summary(trainer, out: Path, interrupted: str) -> None:
    from ..core.train.trainer import KEPT_START

    best = trainer.state.best_score
    print(
        f"{interrupted or 'done'} after {trainer.state.step} steps, {trainer.state.seconds:.0f} s; "
        f"best validation {trainer.score_name} {fmt(best) if trainer.val_pairs else '- (no validation data)'}"
        f"{'; ' + KEPT_START if trainer.kept_start else ''}; model saved to {out}"
        f"{f'; continue with --resume {out}' if interrupted else ''}",
        file=sys.stderr,
    )


_PLANNED = ("depth", "base_features", "patch_size", "batch_size")


def _plan(args: argparse.Namespace, pairs, val_pairs, net, config, world):
    """Plan the settings left open for --minutes (core/train/planner.py): the network, the config
    with the rest of the budget after planning, and the plan to store; unchanged when the
    user set them all, or in a distributed run (whose processes must agree on one network)."""
    from ..core.train.planner import plan_for_budget

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
