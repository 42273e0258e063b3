"""Planning a cluster run: which files are one task each and which images are cut into
blocks, with their chunked outputs and the scratch an interrupted run resumes from (the
tasks themselves, and the run that submits them, are in dask_prediction.py)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.normalize import ImageSource, channels_first, intensity_stats
from ..data.ome_zarr import axes_metadata, is_ome_zarr, output_axes, read_ome_zarr
from ..data.pixel_size import file_pixel_size, ome_zarr_pixel_size
from ..data.rescale import rescaled_shape
from ..data.safe_paths import remove_output_tree
from ..errors import UserInputError
from ..predict.batch import FileJob
from ..predict.inference import Segmenter, leading_shape, stack_channel_axis
from ..predict.stitching import block_layout
from .dask_prediction import _IMAGES, WORK_FOLDER, BlockedImage, ClusterRun, ModelKey, _open_image
from .objects_back import ObjectsBack


def plan_cluster_run(
    jobs: list[FileJob],
    key: ModelKey,
    options: dict,
    *,
    channel_axis: int | None = None,
    block_size: int | None = None,
    resume: bool = False,
) -> ClusterRun:
    """Decide which files are one task and which are cut into blocks, and prepare the
    chunked outputs of the blocked ones (``<name>_labels.ome.zarr``; kept as they are with
    ``resume``, where a run of different settings is refused)."""
    segmenter = Segmenter(key.model, device="cpu", precision="float32", trust_code=key.trust_code)
    run = ClusterRun(key, options, channel_axis)
    output = options.get("output", "semantic")
    for job in jobs:
        image = _open_image(str(job.path))
        blocked = _blocked_layout(segmenter, image, channel_axis, block_size, job, output)
        if blocked is None:
            if resume and all(p.exists() for p in (job.labels, job.probabilities) if p):
                run.summaries.append(f"{job.path.name}: done before -> {job.labels.name}")
            else:
                run.files.append(job)
            continue
        prepared = _prepare_blocked(job, image, blocked, segmenter, options, resume, block_size)
        if prepared is None:
            run.summaries.append(f"{job.path.name}: done before")
        else:
            run.images.append(prepared)
    _IMAGES.clear()  # the client's copies: workers open their own
    return run


def _blocked_layout(segmenter, image, channel_axis, block_size, job: FileJob, output: str):
    """(channel axis, blocks, margin) when ``image`` is worth cutting into blocks, else None:
    packages, stacks for a 2D model, ``--into-input`` and images of one block stay whole."""
    model = segmenter.model_file
    if segmenter.is_package or job.into_input:
        return None
    axis = stack_channel_axis(tuple(image.shape), model, channel_axis)
    dims = model.config.spatial_dims
    if leading_shape(tuple(image.shape), dims, axis):
        return None
    shape = tuple(channels_first(image, dims, axis).shape[1:])
    blocks, margin = block_layout(segmenter.net, shape, block_size)
    if all(b >= n for b, n in zip(blocks, shape, strict=True)):
        return None
    if output == "instances" and not model.is_instance_model:
        raise UserInputError(
            f"{job.path.name}: instances of a semantic model are connected components of the "
            "whole image; on a cluster, big images take instance models (or --output semantic)"
        )
    return axis, shape, blocks, margin


def _prepare_blocked(
    job: FileJob, image, layout, segmenter, options: dict, resume: bool, block_size: int | None
) -> BlockedImage | None:
    """The blocked image's outputs and scratch, new or (``resume``) as an interrupted run left
    them; None when resuming finds it finished (outputs there, scratch gone)."""
    model = segmenter.model_file
    axis, shape, blocks, margin = layout
    dims = model.config.spatial_dims
    instances = options.get("output") == "instances"
    labels = job.labels.with_name(job.labels.name.replace(".tif", ".ome.zarr"))
    prob = None
    if job.probabilities is not None:
        prob = job.probabilities.with_name(job.probabilities.name.replace(".tif", ".ome.zarr"))
    work = labels.parent / WORK_FOLDER / labels.name
    grid = tuple(math.ceil(n / b) for n, b in zip(shape, blocks, strict=True))
    count = math.prod(grid)
    view = channels_first(image, dims, axis)
    stats = intensity_stats(view, model.preprocessing)
    ome = read_ome_zarr(job.path) if is_ome_zarr(job.path) else None
    pixels = ome_zarr_pixel_size(ome, dims) if ome else file_pixel_size(job.path, dims)
    factors = _block_grid(view, stats, model, options, pixels)
    # Objects on a rescaled grid are found in blocks of that grid (passes 1 and 2 in scratch),
    # then brought to the image's grid block by block (pass 3, objects_back.py).
    found_on = _model_grid(segmenter, shape, factors, block_size) if instances else None
    fingerprint = {
        "input": str(job.path.resolve()),
        "shape": list(shape),
        "blocks": list(blocks),
        "margin": margin,
        "options": {k: v for k, v in options.items() if k != "keep_probabilities"},
        "factors": list(factors),
        "model_grid": found_on,
    }
    fingerprint = json.loads(json.dumps(fingerprint))  # as run.json will give it back
    names, scale, units = list("zyx"[-dims:]), [1.0] * dims, {}
    if ome is not None:  # the labels keep the image's axes and pixel sizes
        names, scale = output_axes(ome)
        units = ome.units
    if resume and labels.exists() and not (work / "run.json").exists():
        return None  # the scratch goes last, the outputs came after it: this one is finished
    if resume and (work / "run.json").is_file():
        before = json.loads((work / "run.json").read_text())
        if before["fingerprint"] != fingerprint:
            raise UserInputError(
                f"{labels.name}: the interrupted run had other settings; "
                "run without --resume (and with --overwrite) to start again"
            )
        # float64 holds float32 stats exactly, and the wide ones of extreme images
        low, high = (np.asarray(s, np.float64) for s in before["stats"])
        stats = (low, high)
    else:
        _clear_previous(job, (labels, prob), work, resume)
        g_shape, g_blocks, g_margin = found_on or (shape, blocks, margin)
        window = tuple(min(n, b + 2 * g_margin) for n, b in zip(g_shape, g_blocks, strict=True))
        g_count = math.prod(math.ceil(n / b) for n, b in zip(g_shape, g_blocks, strict=True))
        _create_scratch(work, g_count, window if instances else None, fingerprint, stats)
        if found_on:
            _create_model_grid_scratch(work, found_on, count, smooth=min(factors) < 1)
        space = (names, scale, units)
        label_dtype = np.uint32 if instances else np.uint8
        _create_ome_zarr(labels, shape, blocks, label_dtype, None, space)
        if prob is not None:
            _create_ome_zarr(prob, shape, blocks, np.float32, model.config.out_channels, space)
    blocked = BlockedImage(
        path=str(job.path),
        shape=shape,
        channel_axis=axis,
        blocks=blocks,
        margin=margin,
        stats=stats,
        labels=str(labels),
        probabilities=None if prob is None else str(prob),
        work=str(work),
        instances=instances,
        factors=factors,
    )
    return _on_model_grid(blocked, found_on, options) if found_on else blocked


def _model_grid(segmenter, shape, factors, block_size) -> list | None:
    """[shape, blocks, margin] of the model's grid for objects (None: the image's own)."""
    if not any(f != 1 for f in factors):
        return None
    model_shape = rescaled_shape(shape, factors)
    blocks, margin = block_layout(segmenter.net, model_shape, block_size)
    return [list(model_shape), list(blocks), margin]


def _create_model_grid_scratch(work: Path, found_on: list, count: int, smooth: bool) -> None:
    """Scratch for objects found on the model's grid: their labels there, the foreground
    probability there (when outlines are smoothed: from a coarser grid), pass-3 markers."""
    import zarr

    shape, blocks, _ = found_on
    group = zarr.open_group(str(work), mode="r+")
    group.create_array("mapped", shape=(count,), chunks=(1,), dtype=np.uint32, fill_value=0)
    parts = [("model_labels", np.uint32)] + ([("foreground", np.float32)] if smooth else [])
    for name, dtype in parts:
        sub = group.create_group(name)
        sub.create_array("0", shape=tuple(shape), chunks=tuple(blocks), dtype=dtype, fill_value=0)


def _on_model_grid(image: BlockedImage, found_on: list, options: dict) -> BlockedImage:
    """``image``'s passes 1 and 2 on the model's grid, and its pass 3 back to its own."""
    shape, blocks, margin = (tuple(found_on[0]), tuple(found_on[1]), found_on[2])
    work = Path(image.work)
    smooth = (work / "foreground").exists()
    back = ObjectsBack(
        shape=image.shape,
        blocks=image.blocks,
        model_shape=shape,
        model_labels=str(work / "model_labels"),
        foreground=str(work / "foreground") if smooth else None,
        labels=image.labels,
        work=image.work,
        threshold=float(options.get("threshold", 0.5)),
    )
    return replace(
        image, shape=shape, blocks=blocks, margin=margin, labels=back.model_labels,
        foreground=back.foreground, back=back,
    )  # fmt: skip


def _block_grid(view, stats, model, options: dict, pixels) -> tuple[float, ...]:
    """The factors a blocked image is predicted at (as ``predict`` chooses them for a whole
    file: ``object_size``, pixel sizes, or the estimate); empty for the image's own grid."""
    from ..predict.scale import choose_scale

    dims = model.config.spatial_dims
    object_size = options.get("object_size", "auto")
    if object_size == "native" or model.scale is None:
        return ()
    source = ImageSource(view, dims, model.preprocessing, model.config.in_channels, 0, stats)
    choice = choose_scale(model.scale, source, object_size, pixel_size=pixels)
    return () if choice.native else choice.factors


def _clear_previous(
    job: FileJob, outputs: tuple[Path | None, ...], work: Path, resume: bool
) -> None:
    """Remove the outputs a new run replaces (only with ``--overwrite``, or when resuming
    without scratch) and an interrupted run's scratch; each only when it is the kind we write."""
    for path in outputs:
        if path is not None and path.exists():
            if not job.overwrite and not resume:
                raise UserInputError(
                    f"{path} already exists; pass --overwrite to replace it, or --resume "
                    "to finish an interrupted run"
                )
            remove_output_tree(
                path, root=path.parent, is_ours=is_ome_zarr, kind="an OME-Zarr image"
            )
    # The scratch first and the outputs after it (and, at the end, the scratch removed
    # last): outputs without scratch are a finished run.
    if work.exists() or work.is_symlink():
        remove_output_tree(
            work,
            root=work.parent,
            is_ours=lambda w: (w / "zarr.json").is_file() or (w / "run.json").is_file(),
            kind="the scratch of an interrupted run",
        )


def _create_scratch(
    work: Path,
    count: int,
    objects_window: tuple[int, ...] | None,
    fingerprint: dict,
    stats: tuple[np.ndarray, ...],
) -> None:
    """The scratch of a blocked run: which of ``count`` blocks are done, their object counts
    and (instances: ``objects_window`` given) each block's objects; ``run.json`` holds what
    ``--resume`` checks and the image's intensity statistics."""
    import zarr

    work.mkdir(parents=True)
    group = zarr.open_group(str(work), mode="w")
    for name in ("done", "objects_done", "counts"):
        group.create_array(name, shape=(count,), chunks=(1,), dtype=np.uint32, fill_value=0)
    if objects_window is not None:
        group.create_array(
            "objects", shape=(count, *objects_window), chunks=(1, *objects_window),
            dtype=np.uint32, fill_value=0,
        )  # fmt: skip
    (work / "run.json").write_text(
        json.dumps({"fingerprint": fingerprint, "stats": [s.tolist() for s in stats]})
    )


def _create_ome_zarr(path: Path, shape, blocks, dtype, channels: int | None, space) -> None:
    """An empty single-level OME-Zarr image chunked by block (channels first, if any), with
    the axes, pixel sizes and units of ``space``; written through ``ome_zarr.writer``."""
    import zarr
    from ome_zarr.writer import write_multiscales_metadata

    names, scale, units = space
    full_shape, chunks = tuple(shape), tuple(blocks)
    if channels is not None:
        names, scale = ["c", *names], [1.0, *scale]
        full_shape, chunks = (channels, *full_shape), (channels, *chunks)
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", shape=full_shape, chunks=chunks, dtype=dtype, fill_value=0)
    write_multiscales_metadata(
        group,
        [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        axes=axes_metadata(names, units),
    )
