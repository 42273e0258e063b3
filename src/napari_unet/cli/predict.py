"""``napari-unet predict``: segment files, folders or OME-Zarr images, here or on a Dask
cluster."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    _add_output_options(p)
    _add_speed_options(p)
    _add_file_options(p)
    _add_cluster_options(p)
    p.set_defaults(run=_run_predict)


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """What is written: labels, probabilities, thresholds, object sizes, test-time augmentation."""
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
        "--object-size",
        default="auto",
        metavar="auto|native|PX|xF",
        help="auto (default): estimate the size of the structures in each image and rescale it "
        "to the size the model was trained at; native: no rescaling; a size in pixels (object "
        "diameter, or width of thin structures such as vessels); or a factor such as x0.5. "
        "The size found and the factor used are printed for each image",
    )
    p.add_argument(
        "--min-size",
        type=int,
        default=None,
        help="smallest object kept in instance output, in pixels of the model's grid (default: "
        "a tenth of the area of the model's median object, or 0 when the model does not know it)",
    )
    p.add_argument(
        "--seed-threshold",
        type=float,
        default=0.5,
        help="interior probability that seeds an object (instance models; lower finds more objects)",
    )
    p.add_argument(
        "--match-slices",
        type=float,
        nargs="?",
        const=0.25,
        default=None,
        metavar="IOU",
        help="stacks segmented slice by slice (z or time with a 2D model), instance output: "
        "give an object the id of the object it overlaps most in the slice before (IoU at least "
        "IOU, default 0.25), so it keeps one label through the stack",
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average over the 8 flips and rotations (8x slower)",
    )


def _add_speed_options(p: argparse.ArgumentParser) -> None:
    """How the image is read and tiled, and where it runs."""
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


def _add_file_options(p: argparse.ArgumentParser) -> None:
    """The format of the outputs, labels into OME-Zarr inputs, replacing earlier outputs."""
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


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Dask: where the workers are, block size, threads, resuming."""
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


def _run_predict(args: argparse.Namespace) -> int:
    from ..core import Segmenter, StackProgress, UserInputError
    from ..core.network.devices import slow_precision_note
    from ..core.predict.batch import predict_file

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
    jobs = _plan_jobs(args, files, out_dir, output, overwrite=args.overwrite)
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
                match_slices=args.match_slices,
                progress=report,
                note=lambda line: print(line, file=sys.stderr),
            )
        print(summary, file=sys.stderr)
    return 0


def _plan_jobs(args: argparse.Namespace, files, out_dir: Path, output: str, *, overwrite: bool):
    """Each input's outputs, checked (core/predict/batch.py's plan_jobs)."""
    from ..core.predict.batch import plan_jobs

    return plan_jobs(
        files,
        out_dir,
        probabilities=args.probabilities or output == "probabilities",
        format=args.format,
        into_input=args.into_input,
        label_name=args.label_name,
        overwrite=overwrite,
    )


def _inputs_to_segment(inputs: list[str]) -> list[Path]:
    """The image files named or found in folders, less the labels and probabilities of other
    inputs (an earlier run's outputs are never segmented as images)."""
    from ..core import UserInputError, io
    from ..core.predict.batch import split_outputs_from_inputs

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
    from ..core.predict.scale import parse_object_size

    return {
        "output": output,
        "keep_probabilities": any(j.probabilities is not None for j in jobs),
        "threshold": args.threshold,
        "tile_size": args.tile_size,
        "batch_size": args.batch_size,
        "min_size": args.min_size,
        "object_size": parse_object_size(args.object_size),
        "seed_threshold": args.seed_threshold,
        "test_time_augmentation": args.tta,
    }


def _file_bar(name: str):
    from tqdm import tqdm

    return tqdm(
        desc=name, unit="tile", file=sys.stderr, dynamic_ncols=True, leave=False, disable=None
    )


def _run_predict_on_cluster(args: argparse.Namespace, files: list[Path], out_dir: Path) -> int:
    """``predict --cluster``: the same outputs, computed by Dask workers (core/cluster/dask_prediction.py)."""
    from tqdm import tqdm

    from ..core import Segmenter, UserInputError
    from ..core.cluster.dask_prediction import ModelKey, connect
    from ..core.cluster.planning import plan_cluster_run

    model = args.model
    if Path(model).exists():  # workers elsewhere read it at the same (shared) path
        model = str(Path(model).resolve())
    if args.match_slices is not None:
        raise UserInputError(
            "--match-slices does not work with --cluster: predict the stacks without --cluster"
        )
    segmenter = Segmenter(model, device="cpu", precision="float32", trust_code=args.trust_code)
    output = args.output or segmenter.model_file.suggested_output
    if args.resume and args.overwrite:
        raise UserInputError("--resume keeps what an interrupted run wrote; drop --overwrite")
    jobs = _plan_jobs(args, files, out_dir, output, overwrite=args.overwrite or args.resume)
    threads = args.threads
    if threads is None and args.cluster.startswith("local:"):
        workers = args.cluster.removeprefix("local:")
        threads = max(1, (os.cpu_count() or 1) // max(1, int(workers) if workers.isdigit() else 1))
    key = ModelKey(model, args.device, "auto", args.trust_code, threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..core.predict.inference import default_min_size

    options = _predict_options(args, output, jobs)
    if options["min_size"] is None:
        dims = segmenter.model_file.config.spatial_dims
        options["min_size"] = default_min_size(segmenter.scale, dims)
    run = plan_cluster_run(
        jobs,
        key,
        options,
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
