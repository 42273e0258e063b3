"""Prediction on a Dask cluster (``dask.distributed``): many files, or one image too big for
one process, without a scheduler of our own.

    client = connect("local:4")          # or "tcp://host:8786", or "scheduler.json"
    run = planning.plan_cluster_run(jobs, ModelKey("nuclei"), options)
    for done, total in run.submit(client): ...

- Files that fit one network pass (or a few) are one task each: the worker reads the file,
  segments it exactly as ``napari-unet predict`` does (:func:`.batch.predict_file`) and writes
  its outputs itself.
- A larger image is cut into blocks (the cores of network windows, with the halo of the
  network's receptive radius read around each, as in one process); its labels (and
  probabilities) are written block by block into a chunked OME-Zarr image, one chunk per
  block, so workers never write the same chunk and nothing big comes back to the client.
  Normalisation statistics are measured once, on the client, and shared by all blocks.
- Instances across blocks: each object belongs to the block that holds its centre, which
  segments it whole from a window reaching ``margin`` pixels around the block (as the
  single-process block-wise path, :mod:`.stitching`, does). Pass 1 writes each block's own
  objects and counts them; the counts give every block a range of global ids; pass 2 writes
  each block's labels from its own objects and its neighbours', earlier blocks first. The
  result is the single-process block-wise partition, numbered the same.
- The model is loaded once per worker process and kept (:func:`worker_segmenter`).
- Faults: a task lost with its worker is recomputed by Dask elsewhere; every task writes
  whole chunks and then marks its block done, so a repeated task does no harm. ``resume``
  skips blocks marked done by an interrupted run.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.normalize import BlockSource, ImageSource
from ..data.rescale import RescaledSource, region_to_original_grid, rescaled_region, rescaled_shape
from ..errors import UserInputError
from ..predict.batch import FileJob, predict_file
from ..predict.inference import Segmenter
from ..predict.instances import BOUNDARY, INTERIOR, seeded_watershed
from ..predict.stitching import block_at, grid_of, owned_objects
from ..predict.tiling import (
    foreground_plane,
    labels_on_grid,
    predict_tiled,
    probabilities_to_labels,
)
from .objects_back import ObjectsBack, map_block_task

WORK_FOLDER = ".napari-unet-work"  # per-run scratch next to the outputs; removed when done


def connect(spec: str, threads_per_worker: int | None = None):
    """A ``distributed.Client`` for ``spec``: ``local:N`` starts N worker processes on this
    machine; ``tcp://host:port`` or ``host:port`` joins a running scheduler; a ``.json`` file
    is a scheduler file (``dask scheduler --scheduler-file``, dask-jobqueue, dask-mpi)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise UserInputError(
            "--cluster needs Dask's distributed package: "
            "pip install 'napari-unet-torch[distributed]'"
        ) from err
    if spec.startswith("local:"):
        try:
            workers = int(spec.removeprefix("local:"))
        except ValueError:
            workers = 0
        if workers < 1:
            raise UserInputError(f"--cluster {spec}: expected local:N with N >= 1 workers")
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,  # one task at a time per worker: torch uses the cores
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return Client(cluster)
    try:
        if spec.endswith(".json"):
            if not Path(spec).is_file():
                raise UserInputError(f"--cluster {spec}: no such scheduler file")
            return Client(scheduler_file=spec, timeout="20s")
        return Client(spec, timeout="20s")
    except (OSError, TimeoutError) as err:
        raise UserInputError(f"cannot reach the Dask scheduler at {spec}: {err}") from err


# ---------------------------------------------------------------- on the workers

_SEGMENTERS: dict[tuple, Segmenter] = {}
_IMAGES: dict[str, Any] = {}
LOADS = 0  # models this process has loaded (one per worker is the point)


@dataclass(frozen=True)
class ModelKey:
    """What a worker needs to load the model: a path every worker can read or a bundled name."""

    model: str
    device: str = "auto"
    precision: str = "auto"
    trust_code: bool = False
    threads: int | None = None  # torch threads per worker (None: torch's default)


def worker_segmenter(key: ModelKey) -> Segmenter:
    """The model, loaded once per worker process and kept for its later tasks."""
    key_tuple = (key.model, key.device, key.precision, key.trust_code)
    segmenter = _SEGMENTERS.get(key_tuple)
    if segmenter is None:
        global LOADS
        LOADS += 1
        if key.threads:
            import torch

            torch.set_num_threads(key.threads)
        segmenter = Segmenter(
            key.model, device=key.device, precision=key.precision, trust_code=key.trust_code
        )
        _SEGMENTERS[key_tuple] = segmenter
    return segmenter


def _open_image(path: str):
    """The image lazily (memory map, zarr or OME-Zarr level 0), opened once per worker."""
    image = _IMAGES.get(path)
    if image is None:
        from ..data import io
        from ..data.ome_zarr import is_ome_zarr, read_ome_zarr

        image = read_ome_zarr(path).data if is_ome_zarr(path) else io.read_image(path, memmap=True)
        _IMAGES[path] = image
    return image


def _file_task(job: FileJob, key: ModelKey, options: dict, channel_axis: int | None) -> dict:
    summary = predict_file(worker_segmenter(key), job, options, channel_axis=channel_axis)
    return {"summary": summary, "pid": os.getpid()}


@dataclass(frozen=True)
class BlockedImage:
    """One image predicted block by block, and where its results go."""

    path: str
    shape: tuple[int, ...]  # spatial
    channel_axis: int | None
    blocks: tuple[int, ...]
    margin: int
    stats: tuple[np.ndarray, np.ndarray]
    labels: str  # OME-Zarr image; its array "0" is written block by block
    probabilities: str | None
    work: str  # scratch folder: done markers, pass-1 objects
    instances: bool
    factors: tuple[float, ...] = ()  # the model's grid / the image's (empty: the same)
    # Objects on a rescaled grid: ``shape`` and ``blocks`` are the model's grid, ``labels``
    # a scratch group there, ``foreground`` (when outlines are smoothed) the foreground
    # probability there, and ``back`` the third pass to the image's grid.
    foreground: str | None = None
    back: ObjectsBack | None = None

    @property
    def rescaled(self) -> bool:
        return any(f != 1 for f in self.factors)

    @property
    def grid(self) -> tuple[int, ...]:
        """Blocks along each axis."""
        return grid_of(self.shape, self.blocks)

    @property
    def count(self) -> int:
        return math.prod(self.grid)

    def core(self, index: int) -> tuple[slice, ...]:
        """Block ``index`` (raster order, as :func:`.stitching._grid` numbers them)."""
        return block_at(index, self.shape, self.blocks)

    def neighbours(self, index: int) -> list[int]:
        """Blocks whose windows reach block ``index`` (itself included), in raster order:
        those one step away at most, since the margin is at most a block."""
        position = np.unravel_index(index, self.grid)
        ranges = [
            range(max(0, int(p) - 1), min(g, int(p) + 2))
            for p, g in zip(position, self.grid, strict=True)
        ]
        return sorted(int(np.ravel_multi_index(q, self.grid)) for q in itertools.product(*ranges))

    def window(self, core: tuple[slice, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(max(0, c.start - self.margin), min(n, c.stop + self.margin))
            for c, n in zip(core, self.shape, strict=True)
        )


def _probabilities(image: BlockedImage, region, key: ModelKey, options: dict) -> np.ndarray:
    segmenter = worker_segmenter(key)
    config = segmenter.model_file.config
    source: BlockSource = ImageSource(
        _open_image(image.path),
        config.spatial_dims,
        segmenter.model_file.preprocessing,
        config.in_channels,
        image.channel_axis,
        stats=image.stats,
    )
    if image.rescaled:  # ``region`` is on the model's grid
        source = RescaledSource(source, image.factors)
    net = segmenter.net
    if options.get("test_time_augmentation"):
        from ..predict.tta import TestTimeAugmented

        net = TestTimeAugmented(net)
    prob = np.zeros((config.out_channels, *(r.stop - r.start for r in region)), np.float32)
    for _ in predict_tiled(
        net,
        source,
        prob,
        region=region,
        tile_size=options.get("tile_size"),
        batch_size=options.get("batch_size", 4),
        device=segmenter.device,
        precision=segmenter.precision,
    ):
        pass
    return prob


def _rescaled_block(
    image: BlockedImage, core: tuple[slice, ...], key: ModelKey, options: dict
) -> tuple[np.ndarray | None, np.ndarray]:
    """Probabilities (when kept) and labels of block ``core`` (on the image's grid) predicted on the
    model's grid and interpolated back, as the single-process path maps a whole image back
    (``inference._to_image_grid``): the same values, block by block."""
    shape = rescaled_shape(image.shape, image.factors)
    region, coords = rescaled_region(core, image.shape, shape)
    multiple = worker_segmenter(key).model_file.config.size_multiple
    # The tiler takes regions that start on the network's size multiple (its tiles then
    # fall where a whole-image pass puts them); interpolation takes any start.
    region = tuple(slice(r.start - r.start % multiple, r.stop) for r in region)
    prob = _probabilities(image, region, key, options)
    all_classes = image.probabilities is not None or prob.shape[0] > 2
    return labels_on_grid(
        prob,
        lambda a: region_to_original_grid(a, region, coords),
        options.get("threshold", 0.5),
        all_classes,
    )


def _zarr_array(path: str, name: str = "0"):
    import zarr

    return zarr.open_group(path, mode="r+")[name]


def _mark_done(image: BlockedImage, index: int, phase: str) -> None:
    _zarr_array(image.work, phase)[index] = 1


def _semantic_block_task(image: BlockedImage, index: int, key: ModelKey, options: dict) -> dict:
    core = image.core(index)
    threshold = options.get("threshold", 0.5)
    if image.rescaled:
        prob, labels = _rescaled_block(image, core, key, options)
    else:
        prob = _probabilities(image, core, key, options)
        labels = probabilities_to_labels(prob, threshold)
    _zarr_array(image.labels)[core] = labels
    if image.probabilities is not None:
        _zarr_array(image.probabilities)[(slice(None), *core)] = prob
    _mark_done(image, index, "done")
    return {"pid": os.getpid()}


def _objects_block_task(image: BlockedImage, index: int, key: ModelKey, options: dict) -> dict:
    """Pass 1: the objects this block owns, segmented from its window; their count."""
    core = image.core(index)
    window = image.window(core)
    prob = _probabilities(image, window, key, options)
    interior = prob[INTERIOR]
    foreground = (prob[INTERIOR] + prob[BOUNDARY]) > options.get("threshold", 0.5)
    objects = seeded_watershed(interior, foreground, options.get("seed_threshold", 0.5))
    owned, kept = owned_objects(objects, core, window, options.get("min_size", 0))
    local = tuple(slice(0, w.stop - w.start) for w in window)
    if image.foreground is not None:  # for the outlines of the third pass
        inner = tuple(
            slice(c.start - w.start, c.stop - w.start) for c, w in zip(core, window, strict=True)
        )
        _zarr_array(image.foreground)[core] = foreground_plane(prob)[0][inner]
    _zarr_array(image.work, "objects")[(index, *local)] = owned
    _zarr_array(image.work, "counts")[index] = kept
    _mark_done(image, index, "objects_done")
    return {"pid": os.getpid(), "objects": kept}


def _labels_block_task(image: BlockedImage, index: int, offsets: dict[int, int]) -> dict:
    """Pass 2: the block's labels from the objects of every block whose window reaches it,
    earlier blocks first (as the single-process path writes them), in global numbers."""
    core = image.core(index)
    out = np.zeros(tuple(c.stop - c.start for c in core), np.uint32)
    objects = _zarr_array(image.work, "objects")
    for other in image.neighbours(index):
        window = image.window(image.core(other))
        overlap = tuple(
            slice(max(c.start, w.start), min(c.stop, w.stop))
            for c, w in zip(core, window, strict=True)
        )
        if any(o.start >= o.stop for o in overlap):
            continue
        theirs = np.asarray(
            objects[(other, *(slice(o.start - w.start, o.stop - w.start)
                              for o, w in zip(overlap, window, strict=True)))]
        )  # fmt: skip
        ours = tuple(
            slice(o.start - c.start, o.stop - c.start) for o, c in zip(overlap, core, strict=True)
        )
        target = out[ours]
        fill = (target == 0) & (theirs > 0)
        target[fill] = theirs[fill] + np.uint32(offsets[other])
    _zarr_array(image.labels)[core] = out
    _mark_done(image, index, "done")
    return {"pid": os.getpid()}


# ---------------------------------------------------------------- on the client


@dataclass
class ClusterRun:
    """The tasks of one ``predict --cluster`` run: whole files and blocked images."""

    key: ModelKey
    options: dict
    channel_axis: int | None
    files: list[FileJob] = field(default_factory=list)
    images: list[BlockedImage] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def total(self) -> int:
        """Tasks in all (instances count their blocks twice: objects, then labels)."""
        blocks = sum(i.count * (2 if i.instances else 1) for i in self.images)
        return len(self.files) + blocks + sum(i.back.count for i in self.images if i.back)

    def submit(self, client) -> Iterator[tuple[int, int]]:
        """Run everything on ``client``, yielding (tasks done, tasks in all) as they finish.
        Blocks already marked done (``resume``) count as done at once."""
        from distributed import as_completed

        total = self.total()
        done = 0
        futures = [
            client.submit(_file_task, job, self.key, self.options, self.channel_axis, pure=False)
            for job in self.files
        ]
        second_pass: list[BlockedImage] = []
        for image in self.images:
            phase = "objects_done" if image.instances else "done"
            finished = np.asarray(_zarr_array(image.work, phase)[:])
            task = _objects_block_task if image.instances else _semantic_block_task
            for index in range(image.count):
                if finished[index]:
                    done += 1
                    continue
                futures.append(
                    client.submit(task, image, index, self.key, self.options, pure=False)
                )
            if image.instances:
                second_pass.append(image)
        yield done, total
        for future in as_completed(futures):
            result = future.result()  # a task's error ends the run, with its message
            self.pids.add(result["pid"])
            if "summary" in result:
                self.summaries.append(result["summary"])
            done += 1
            yield done, total
        futures = []
        for image in second_pass:
            counts = np.asarray(_zarr_array(image.work, "counts")[:], np.int64)
            offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
            finished = np.asarray(_zarr_array(image.work, "done")[:])
            for index in range(image.count):
                if finished[index]:
                    done += 1
                    continue
                mine = {other: offsets[other] for other in image.neighbours(index)}
                futures.append(client.submit(_labels_block_task, image, index, mine, pure=False))
            output = Path(image.back.labels if image.back else image.labels).name
            grid = f" (found at x{image.factors[0]:.3g})" if image.back else ""
            self.summaries.append(
                f"{Path(image.path).name}: {int(counts.sum())} object(s) -> {output}{grid}"
            )
        if second_pass:
            yield done, total
        for future in as_completed(futures):
            self.pids.add(future.result()["pid"])
            done += 1
            yield done, total
        futures = []
        for back in (image.back for image in second_pass if image.back is not None):
            finished = np.asarray(_zarr_array(back.work, "mapped")[:])
            for index in range(back.count):
                if finished[index]:
                    done += 1
                    continue
                futures.append(client.submit(map_block_task, back, index, pure=False))
        for future in as_completed(futures):
            self.pids.add(future.result()["pid"])
            done += 1
            yield done, total
        for image in self.images:
            if not image.instances:
                grid = f" (predicted at x{image.factors[0]:.3g})" if image.rescaled else ""
                self.summaries.append(
                    f"{Path(image.path).name}: -> {Path(image.labels).name}{grid}"
                )
            shutil.rmtree(image.work, ignore_errors=True)
            with contextlib.suppress(OSError):  # the work folder, once no run uses it
                Path(image.work).parent.rmdir()
