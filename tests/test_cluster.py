"""Prediction on a local Dask cluster of 2 worker processes equals prediction in one process:
many files (one task each), a big image in blocks (semantic, probabilities, instances across
blocks), resuming an interrupted run, and a worker killed mid-run."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import tifffile

pytest.importorskip("distributed")
pytest.importorskip("ome_zarr")

from napari_unet.cli import main
from napari_unet.core import Segmenter
from napari_unet.core.cluster import dask_prediction as cl
from napari_unet.core.cluster.planning import plan_cluster_run
from napari_unet.core.data.io import read_image
from napari_unet.core.data.ome_zarr import read_ome_zarr
from napari_unet.core.predict.batch import plan_jobs
from napari_unet.samples import sample_path

pytestmark = pytest.mark.slow  # over 10 s on 2 cores: not in the inner loop

BLOCK = 256


@pytest.fixture(scope="module")
def client():
    client = cl.connect("local:2")
    yield client
    client.close()
    client.cluster.close()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """The nuclei sample tiled to 600 x 700: 3 x 3 blocks of 256."""
    folder = tmp_path_factory.mktemp("big")
    image = np.tile(read_image(sample_path("nuclei")), (2, 2))[:600, :700]
    tifffile.imwrite(folder / "big.tif", image)
    return folder / "big.tif"


@pytest.fixture(scope="module")
def one_process():
    return Segmenter("nuclei", device="cpu", precision="float32")


def _options(output, probabilities=False):
    return {"output": output, "keep_probabilities": probabilities, "threshold": 0.5,
            "tile_size": None, "batch_size": 4, "min_size": 0, "seed_threshold": 0.5}  # fmt: skip


def _plan(path, out, output, probabilities=False, resume=False, **more):
    jobs = plan_jobs([path], out, probabilities=probabilities, overwrite=resume)
    key = cl.ModelKey("nuclei", "cpu", "float32", threads=1)
    options = _options(output, probabilities) | more
    return plan_cluster_run(jobs, key, options, block_size=BLOCK, resume=resume)


def _run(run, client, on_progress=None):
    for done, total in run.submit(client):
        if on_progress is not None:
            on_progress(done, total)
    return run


def test_blocks_equal_one_process_and_the_model_loads_once_per_worker(
    client, big, one_process, tmp_path
):
    run = _run(_plan(big, tmp_path, "semantic", probabilities=True), client)
    assert len(run.images) == 1 and run.images[0].count == 9
    labels = read_ome_zarr(tmp_path / "big_labels.ome.zarr")
    prob = read_ome_zarr(tmp_path / "big_probabilities.ome.zarr")
    assert labels.axes == ["y", "x"] and prob.axes == ["c", "y", "x"]
    expected = one_process.predict(read_image(big), output="probabilities")
    assert np.abs(np.asarray(prob.data) - expected.probabilities).max() < 1e-5
    assert np.array_equal(np.asarray(labels.data), expected.labels)
    # Nine tasks, two workers, and each worker loaded the model once.
    assert client.run(lambda: cl.LOADS) == dict.fromkeys(client.run(os.getpid), 1)
    assert not (tmp_path / cl.WORK_FOLDER).exists()  # the scratch is gone


def test_blocks_on_a_rescaled_grid_equal_one_process(client, big, one_process, tmp_path):
    """Asked for x0.6: each block is predicted on the model's grid and interpolated back,
    giving what one process gives for the whole image, block seams included."""
    run = _run(_plan(big, tmp_path, "semantic", True, object_size=("factor", 0.6)), client)
    assert run.images[0].factors == (0.6, 0.6) and "predicted at x0.6" in run.summaries[-1]
    labels = np.asarray(read_ome_zarr(tmp_path / "big_labels.ome.zarr").data)
    prob = np.asarray(read_ome_zarr(tmp_path / "big_probabilities.ome.zarr").data)
    expected = one_process.predict(read_image(big), output="probabilities", object_size="x0.6")
    assert expected.scale.factors == (0.6, 0.6) and prob.shape == expected.probabilities.shape
    assert np.abs(prob - expected.probabilities).max() < 1e-5
    assert (labels == expected.labels).mean() > 0.9999  # float ties at a class boundary aside


@pytest.mark.parametrize("factor", [0.6, 1.5])
def test_instances_on_a_rescaled_grid_are_the_one_process_objects(
    client, big, one_process, tmp_path, factor
):
    """Objects found in blocks of the model's grid (x0.6: coarser, outlines smoothed back;
    x1.5: finer, nearest neighbour), brought back block by block: the single-process
    objects (which on a coarser grid come from the whole image's probabilities, numbered in
    another order: compared object for object)."""
    run = _run(_plan(big, tmp_path, "instances", object_size=("factor", factor)), client)
    assert f"found at x{factor:g}" in run.summaries[-1]
    got = np.asarray(read_ome_zarr(tmp_path / "big_labels.ome.zarr").data)
    expected = one_process.predict(
        read_image(big), output="instances", tile_size=BLOCK, object_size=f"x{factor}", min_size=0
    )
    assert expected.scale.factors == (factor, factor) and got.shape == expected.labels.shape
    assert got.max() == expected.labels.max() > 50
    # Each object onto the one-process object it overlaps most: the same pixels.
    pairs = np.unique(np.stack([got.ravel(), expected.labels.ravel()]), axis=1, return_counts=True)
    best = {}
    for (ours, theirs), count in zip(pairs[0].T, pairs[1], strict=True):
        if count > best.get(ours, (0, 0))[1]:
            best[ours] = (theirs, count)
    mapped = np.vectorize(lambda v: best[v][0])(got)
    assert (mapped == expected.labels).mean() > 0.9999  # ties between equally near objects aside
    assert len({theirs for theirs, _ in best.values()}) == len(best)  # one to one
    assert not (tmp_path / cl.WORK_FOLDER).exists()


def test_instances_across_blocks_are_the_one_process_partition(client, big, one_process, tmp_path):
    _run(_plan(big, tmp_path, "instances"), client)
    got = np.asarray(read_ome_zarr(tmp_path / "big_labels.ome.zarr").data)
    # The single-process block-wise path with the same blocks: the same objects, same numbers.
    # A cluster predicts on the image's own grid: the one-process reference too.
    expected = one_process.predict(
        read_image(big), output="instances", tile_size=BLOCK, object_size="native", min_size=0
    ).labels
    assert got.max() == expected.max() > 50
    assert np.array_equal(got, expected)


def test_resume_skips_finished_blocks(client, big, one_process, tmp_path):
    interrupted = _plan(big, tmp_path, "semantic")
    image = interrupted.images[0]
    for index in (0, 4, 8):  # what a run stopped early had finished
        cl._semantic_block_task(image, index, interrupted.key, interrupted.options)
    resumed = _plan(big, tmp_path, "semantic", resume=True)
    progress = []
    _run(resumed, client, lambda done, total: progress.append((done, total)))
    assert progress[0] == (3, 9) and progress[-1] == (9, 9)
    got = np.asarray(read_ome_zarr(tmp_path / "big_labels.ome.zarr").data)
    assert np.array_equal(got, one_process.predict(read_image(big), object_size="native").labels)


def test_a_killed_worker_is_replaced_and_the_output_is_complete(client, big, one_process, tmp_path):
    victims = []

    def kill_one(done, total):
        if done >= 1 and not victims:
            pid = next(iter(client.run(os.getpid).values()))
            victims.append(pid)
            os.kill(pid, signal.SIGKILL)

    _run(_plan(big, tmp_path, "semantic"), client, kill_one)
    assert victims
    got = np.asarray(read_ome_zarr(tmp_path / "big_labels.ome.zarr").data)
    assert np.array_equal(got, one_process.predict(read_image(big), object_size="native").labels)


def test_command_line_cluster_run_of_many_files_and_a_big_one(big, one_process, tmp_path, capsys):
    small = []
    for i in range(3):
        path = tmp_path / f"small{i}.tif"
        tifffile.imwrite(path, read_image(big)[i * 60 : i * 60 + 200, :240])
        small.append(path)
    out = tmp_path / "out"
    args = ["predict", str(big), *map(str, small), "--model", "nuclei", "--out", str(out)]
    assert main([*args, "--cluster", "local:2", "--block-size", str(BLOCK)]) == 0
    err = capsys.readouterr().err
    assert "3 file task(s); big.tif in 9 blocks of 256x256" in err
    for path in small:
        expected = one_process.predict(read_image(path), output="instances").labels
        assert np.array_equal(tifffile.imread(out / f"{path.stem}_labels.tif"), expected)
    assert (out / "big_labels.ome.zarr").is_dir()
    # Again: refused without --overwrite, in one line; --resume finds everything done.
    assert main([*args, "--cluster", "local:1"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--cluster", "local:1", "--resume", "--block-size", str(BLOCK)]) == 0
    err = capsys.readouterr().err
    assert err.count("done before") == 4 and "0 worker process(es)" in err


def test_cluster_errors_are_one_line(tmp_path, big, capsys):
    args = ["predict", str(big), "--model", "nuclei", "--out", str(tmp_path)]
    assert main([*args, "--cluster", "local:0"]) == 2
    assert "expected local:N" in capsys.readouterr().err
    assert main([*args, "--cluster", str(tmp_path / "missing.json")]) == 2
    assert "no such scheduler file" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 2
    assert "add --cluster" in capsys.readouterr().err


def test_a_3d_ome_zarr_volume_in_blocks_keeps_pixel_sizes(client, tmp_path):
    """A 3D model on an OME-Zarr volume: blocks in z, y and x, the single-process result,
    and the input's axes and pixel sizes on the output."""
    import torch

    from napari_unet.core import ModelFile, Preprocessing, UNetConfig, save_model
    from napari_unet.core.data.ome_zarr import write_ome_zarr
    from napari_unet.core.network.unet import UNet

    torch.manual_seed(0)
    config = UNetConfig(spatial_dims=3, depth=2, base_features=4)
    net = UNet(config).eval()
    model = ModelFile(config, Preprocessing(), net.state_dict())
    path = save_model(model, tmp_path / "m3d.pt")
    volume = (np.random.default_rng(0).random((40, 72, 80)) * 1000).astype(np.uint16)
    source = write_ome_zarr(
        tmp_path / "vol.ome.zarr", volume, ["z", "y", "x"], [2.0, 0.5, 0.5],
        {"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )  # fmt: skip
    jobs = plan_jobs([source], tmp_path / "out", probabilities=True)
    key = cl.ModelKey(str(path), "cpu", "float32", threads=1)
    run = plan_cluster_run(jobs, key, _options("semantic", True), block_size=32)
    assert run.images[0].grid == (2, 3, 3)
    _run(run, client)
    labels = read_ome_zarr(tmp_path / "out" / "vol_labels.ome.zarr")
    prob = read_ome_zarr(tmp_path / "out" / "vol_probabilities.ome.zarr")
    assert labels.axes == ["z", "y", "x"] and labels.scale == [2.0, 0.5, 0.5]
    assert labels.units.get("z") == "micrometer"
    assert prob.axes == ["c", "z", "y", "x"]
    expected = Segmenter(model, device="cpu", precision="float32").predict(
        volume, output="probabilities", halo="exact"
    )
    assert np.abs(np.asarray(prob.data) - expected.probabilities).max() < 1e-5
    assert np.array_equal(np.asarray(labels.data), expected.labels)


def test_joining_a_running_scheduler_by_address_or_file(client, big, one_process, tmp_path, capsys):
    args = ["predict", str(big), "--model", "nuclei", "--output", "semantic"]
    assert main([*args, "--out", str(tmp_path / "a"), "--cluster", client.scheduler.address]) == 0
    scheduler_file = tmp_path / "scheduler.json"
    # What `dask scheduler --scheduler-file` writes, less the worker details. (Not
    # client.write_scheduler_file: it dumps scheduler_info(), whose worker metrics can hold
    # tuple keys that json refuses, depending on what the workers have reported by then.)
    scheduler_file.write_text(
        json.dumps({"type": "Scheduler", "address": client.scheduler.address})
    )
    assert main([*args, "--out", str(tmp_path / "b"), "--cluster", str(scheduler_file)]) == 0
    assert "(2 worker(s))" in capsys.readouterr().err
    expected = one_process.predict(read_image(big)).labels
    for out in ("a", "b"):  # one task: the image fits one default block
        assert np.array_equal(tifffile.imread(tmp_path / out / "big_labels.tif"), expected)
    assert client.run(lambda: 1)  # the cluster is still there: joining never closes it
