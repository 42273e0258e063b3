"""One image file in, its segmentation files out: what ``napari-unet predict`` does per file,
in this process or as one task of a Dask cluster (:mod:`~napari_unet.core.cluster.dask_prediction`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..data import io
from ..data.image_kind import mismatch_warning
from ..data.ome_zarr import (
    check_label_name,
    is_ome_zarr,
    output_axes,
    probability_layout,
    read_ome_zarr,
    write_ome_zarr,
)
from ..data.ome_zarr import write_labels_into as _write_labels_into
from ..data.pixel_size import file_pixel_size, ome_zarr_pixel_size
from ..data.safe_paths import refuse_inputs
from ..errors import UserInputError
from .inference import (
    Prediction,
    Segmenter,
    iter_predict_stack,
    leading_shape,
    run_to_end,
    stack_channel_axis,
)
from .slice_matching import match_across_slices

FORMATS = ("tif", "ome-zarr")


@dataclass(frozen=True)
class FileJob:
    """An input file and where its results go.

    ``labels`` is the labels file (or, with ``into_input``, the input's ``labels/NAME``
    group); ``probabilities`` the probabilities file or None.
    """

    path: Path
    labels: Path
    probabilities: Path | None = None
    format: str = "tif"
    into_input: bool = False
    label_name: str = "napari-unet"
    overwrite: bool = False


def plan_jobs(
    files: list[Path],
    out_dir: Path,
    *,
    probabilities: bool,
    format: str = "tif",
    into_input: bool = False,
    label_name: str = "napari-unet",
    overwrite: bool = False,
) -> list[FileJob]:
    """The outputs of each input (``<name>_labels.tif`` ...); refuses colliding names, inputs
    that cannot take labels, outputs that would land on (or inside) an input, a label name
    that is not one plain name, and existing outputs unless ``overwrite``."""
    if into_input:
        check_label_name(label_name)
        not_ome = [f.name for f in files if not is_ome_zarr(f)]
        if not_ome:
            raise UserInputError(
                f"--into-input writes into OME-Zarr images only; not one: {', '.join(not_ome[:3])}"
            )
    suffix = ".ome.zarr" if format == "ome-zarr" else ".tif"
    jobs = []
    for f in files:
        stem = _stem(f)
        labels = f / "labels" / label_name if into_input else out_dir / f"{stem}_labels{suffix}"
        prob = out_dir / f"{stem}_probabilities{suffix}" if probabilities else None
        jobs.append(FileJob(f, labels, prob, format, into_input, label_name, overwrite))
    names = [j.labels.name for j in jobs]
    if not into_input and len(set(names)) != len(names):
        raise UserInputError("two inputs have the same file name; their outputs would collide")
    refuse_inputs([out_dir], [f for f in files if f.is_dir()], "--out")
    refuse_inputs(
        [t for j in jobs for t in (None if into_input else j.labels, j.probabilities)],
        files,
        "the output",
    )
    if not overwrite:
        existing = [str(t) for j in jobs for t in (j.labels, j.probabilities) if t and t.exists()]
        if existing:
            more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
            raise UserInputError(
                f"output exists: {', '.join(existing[:3])}{more}; pass --overwrite to replace "
                "it (with --cluster, --resume finishes an interrupted run and keeps what it wrote)"
            )
    return jobs


OUTPUT_SUFFIXES = ("_labels", "_probabilities")


def _stem(path: Path) -> str:
    """The name outputs are named after: ``a`` for ``a.tif`` and ``a.ome.zarr``."""
    return path.name[: -len(path.suffix)].removesuffix(".ome") if path.suffix else path.name


def split_outputs_from_inputs(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(inputs, skipped): ``<name>_labels.*`` and ``<name>_probabilities.*`` are the labels or
    probabilities of ``<name>`` (written by an earlier run, or ground truth kept beside the
    images), never images to segment, when ``<name>`` itself is among ``files``."""

    images = {(f.parent.resolve(), _stem(f)) for f in files}
    kept, skipped = [], []
    for f in files:
        name = _stem(f)
        owner = next(
            (name.removesuffix(s) for s in OUTPUT_SUFFIXES if name.endswith(s) and name != s),
            None,
        )
        if owner is not None and (f.parent.resolve(), owner) in images:
            skipped.append(f)
        else:
            kept.append(f)
    return kept, skipped


def predict_file(
    segmenter: Segmenter,
    job: FileJob,
    options: dict,
    *,
    channel_axis: int | None = None,
    match_slices: float | None = None,
    progress: Callable | None = None,
    note: Callable[[str], None] | None = None,
) -> str:
    """Segment ``job.path`` with ``segmenter`` (``options`` as for :meth:`Segmenter.iter_predict`),
    write its outputs, and return a one-line summary (objects or foreground, where written).

    A stack of 2D images for a 2D model is segmented slice by slice; ``note`` hears about it.
    ``match_slices``: for instance output of such a stack, the overlap (IoU) from which an
    object continues one in the slice before, under its id (None: ids per slice).
    """
    steps = iter_predict_file(
        segmenter, job, options, channel_axis=channel_axis, match_slices=match_slices, note=note
    )
    return run_to_end(steps, progress)


def iter_predict_file(
    segmenter: Segmenter,
    job: FileJob,
    options: dict,
    *,
    channel_axis: int | None = None,
    match_slices: float | None = None,
    note: Callable[[str], None] | None = None,
) -> Generator[Any, None, str]:
    """:func:`predict_file` as a generator of tile progress (a caller such as the napari
    dock can stop between tiles); returns the summary."""
    ome = read_ome_zarr(job.path) if is_ome_zarr(job.path) else None
    image = ome.data if ome is not None else io.read_image(job.path, memmap=True)
    dims = segmenter.model_file.config.spatial_dims
    name = job.path.name
    try:
        if ome is not None and channel_axis is None:  # the metadata says which axis is c
            channel_axis = ome.channel_axis
        if "pixel_size" not in options:  # for models that know theirs
            pixels = ome_zarr_pixel_size(ome, dims) if ome else file_pixel_size(job.path, dims)
            options = {**options, "pixel_size": pixels}
        channel_axis = stack_channel_axis(image.shape, segmenter.model_file, channel_axis)
        warning = mismatch_warning(segmenter.model_file, image, channel_axis)
        if note is not None and warning:
            note(f"{name}: {warning}")
        stack = leading_shape(tuple(image.shape), dims, channel_axis)
        if stack:  # e.g. a z-stack for a 2D model: one slice at a time
            if note is not None:
                note(f"{name}: {math.prod(stack)} {dims}D slice(s) (stack axes {stack})")
            steps: Generator[Any, None, Prediction] = iter_predict_stack(
                segmenter, image, channel_axis=channel_axis, **options
            )
        else:
            steps = segmenter.iter_predict(image, channel_axis=channel_axis, **options)
        result = yield from steps
        if stack and match_slices is not None and options.get("output") == "instances":
            labels = match_across_slices(result.labels, len(stack), match_slices)
            result = replace(result, labels=labels)
    except UserInputError as err:
        raise UserInputError(f"{name}: {err}") from err
    write_results(job, result, ome, dims)
    if options.get("output") == "instances":
        what = f"{int(result.labels.max())} object(s)"
    else:
        what = f"{(result.labels > 0).mean():.1%} foreground"
    where = f"{name}/labels/{job.label_name}" if job.into_input else job.labels.name
    scale = f" ({result.scale.describe()})" if result.scale is not None else ""
    return f"{name}: {what} -> {where}{scale}"


def write_results(job: FileJob, result: Prediction, ome, spatial_dims: int) -> None:
    """Write a prediction where ``job`` says, in its format: the outputs of one image are
    written as a set (all or none, see :func:`.io.write_outputs`)."""
    outputs = []
    if job.format == "ome-zarr" and not job.into_input:
        outputs = _ome_zarr_outputs(ome, result, job, spatial_dims)
    elif not job.into_input:
        outputs.append(io.Output(job.labels, lambda tmp: io.write_tiff(tmp, result.labels)))
    probabilities = result.probabilities
    if job.probabilities is not None and probabilities is not None and job.format != "ome-zarr":
        outputs.append(io.Output(job.probabilities, lambda tmp: io.write_tiff(tmp, probabilities)))
    if job.into_input:
        _write_into_input(job, result, ome, outputs)
    else:
        io.write_outputs(outputs, overwrite=job.overwrite, what=job.path.name)


def _write_into_input(job: FileJob, result: Prediction, ome, outputs: list) -> None:
    """Labels into the input's ``labels/NAME``, the probabilities file beside: both or
    neither. The file is written first; if the labels then fail, what this call created (the
    file, a new labels group) is removed again, and the error says so."""
    created = [out.path for out in outputs if not out.path.exists()]
    io.write_outputs(outputs, overwrite=job.overwrite, what=job.path.name)
    target = job.path / "labels" / job.label_name
    new_group = not target.exists()
    try:
        _write_labels_into(ome, result.labels, job.label_name, overwrite=job.overwrite)
    except BaseException as err:
        for path in created:
            path.unlink(missing_ok=True)
        if new_group and target.is_dir() and not target.is_symlink():
            import shutil

            shutil.rmtree(target, ignore_errors=True)
        if isinstance(err, OSError):
            raise UserInputError(
                f"cannot write the labels into {target}: {io.describe_os_error(err)}; "
                f"removed what this run had written for {job.path.name}"
            ) from err
        raise


def _ome_zarr_outputs(ome, result: Prediction, job: FileJob, spatial_dims: int) -> list:
    """Labels (and probabilities) as new OME-Zarr images with the input's axes and pixel sizes
    (plain images: axes named from the end, y and x last, pixel size 1)."""
    if ome is not None:
        axes, scale = output_axes(ome)
        units = ome.units
    else:
        ndim = result.labels.ndim
        if ndim > 4:
            raise UserInputError(
                f"OME-Zarr holds at most 4 axes besides channels; the labels have {ndim}"
            )
        axes, scale, units = list("tzyx"[-ndim:]), [1.0] * ndim, {}
    outputs = [
        io.Output(
            job.labels,
            lambda tmp: write_ome_zarr(tmp, result.labels, axes, scale, units),
            folder=True,
            is_ours=is_ome_zarr,
            kind="an OME-Zarr image",
        )
    ]
    if job.probabilities is not None and result.probabilities is not None:
        data, names, sizes = probability_layout(result.probabilities, axes, scale, spatial_dims)
        outputs.append(
            io.Output(
                job.probabilities,
                lambda tmp: write_ome_zarr(tmp, data, names, sizes, units),
                folder=True,
                is_ours=is_ome_zarr,
                kind="an OME-Zarr image",
            )
        )
    return outputs


class OutputsExist(UserInputError):
    """Results of an earlier run are where this one would write."""


def folder_jobs(folder: str | Path, out: str | Path, *, overwrite: bool) -> list[FileJob]:
    """The images of ``folder`` (less the labels and probabilities of others) and their
    ``<name>_labels.tif`` in ``out``, checked as ``napari-unet predict`` checks them; raises
    :class:`OutputsExist` when results are there already, unless ``overwrite``."""
    files, _ = split_outputs_from_inputs(io.list_images([folder]))
    if not files:
        raise UserInputError(f"no images to segment in {folder}")
    jobs = plan_jobs(files, Path(out), probabilities=False, overwrite=True)
    existing = [job.labels.name for job in jobs if job.labels.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise OutputsExist(
            f"{len(existing)} result(s) already in {out}: {', '.join(existing[:3])}{more}"
        )
    return jobs
