"""The options of ``napari-unet train``, grouped as its help shows them."""

from __future__ import annotations

import argparse


def declare(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
    _add_length_options(p)
    _add_label_options(p)
    _add_architecture_options(p)
    _add_training_options(p)
    return p


def _add_length_options(p: argparse.ArgumentParser) -> None:
    """How long to train: epochs or a time budget, and what is planned for it."""
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


def _add_label_options(p: argparse.ArgumentParser) -> None:
    """What the labels mean, the classes and tasks, and how images are read."""
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


def _add_architecture_options(p: argparse.ArgumentParser) -> None:
    """The network of a new model (a model given with --from or --resume brings its own)."""
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


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """Patches, optimiser, loss, validation, augmentation, seed and device."""
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
    p.add_argument(
        "--low-resolution",
        type=float,
        default=1.0,
        help="add low resolution to augmentation: half the patches as pixels up to this many "
        "times larger would show them (shrunk, enlarged back), for images of lower "
        "magnification than the labelled ones (default 1: none)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--description", default="", help="text stored in the model file")


ARCHITECTURE_OPTIONS = (
    "depth",
    "base_features",
    "norm",
    "upsample",
    "dropout",
    "padding",
    "encoder",
)
