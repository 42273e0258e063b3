import os
import pickle
import zipfile

import pytest
import torch
from tests.conftest import randomise_batchnorm

from napari_unet.core import (
    ModelFile,
    ModelFileError,
    Preprocessing,
    UNet,
    UNetConfig,
    UserInputError,
    import_state_dict,
    load_model,
    save_model,
)
from napari_unet.core.models import model_file as ckpt

CONFIG = UNetConfig(depth=2, base_features=4, in_channels=3, out_channels=3)


def _model_file(config=CONFIG):
    net = randomise_batchnorm(UNet(config))
    return ModelFile(
        config,
        Preprocessing(channel_mode="as_is", low=2.0),
        net.state_dict(),
        ["background", "cell", "nucleus"],
        history={"runs": [{"steps": 3}]},
        description="test",
    )


def test_round_trip_rebuilds_the_same_network(tmp_path):
    original = _model_file()
    save_model(original, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config == CONFIG and loaded.preprocessing == original.preprocessing
    assert loaded.class_names == ["background", "cell", "nucleus"] and loaded.description == "test"
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(original.build()(x), loaded.build()(x))


def test_saved_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        save_model(_model_file(), tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "m.pt").stat().st_mode & 0o777 == 0o644


def test_half_precision_files_are_smaller_and_close(tmp_path):
    config = UNetConfig(depth=3, base_features=16)  # big enough for weights to dominate the file
    original = ModelFile(config, Preprocessing(), randomise_batchnorm(UNet(config)).state_dict())
    save_model(original, tmp_path / "full.pt")
    save_model(original, tmp_path / "half.pt", half=True)
    assert os.path.getsize(tmp_path / "half.pt") < 0.6 * os.path.getsize(tmp_path / "full.pt")
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        a, b = original.build()(x), load_model(tmp_path / "half.pt").build()(x)
    assert torch.allclose(a, b, atol=1e-2)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_malicious_pickle_is_refused_and_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "napari-unet-model", "payload": _Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match="refused to load"):
        load_model(tmp_path / "evil.pt")
    assert not (tmp_path / "PWNED").exists()


def test_truncated_file_is_reported(tmp_path):
    save_model(_model_file(), tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_model(tmp_path / "cut.pt")


def test_foreign_files_are_reported(tmp_path):
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ModelFileError, match="not a PyTorch model file"):
        load_model(tmp_path / "text.pt")
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a napari-unet model file"):
        load_model(tmp_path / "other.pt")
    torch.save(UNet(CONFIG).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ModelFileError, match=r"plain PyTorch state_dict.*napari-unet import"):
        load_model(tmp_path / "plain.pt")
    with pytest.raises(ModelFileError, match="neither a file nor a bundled model"):
        load_model(tmp_path / "missing.pt")


def test_newer_format_version_asks_for_an_upgrade(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt, "FORMAT_VERSION", ckpt.FORMAT_VERSION + 1)
    save_model(_model_file(), tmp_path / "new.pt")
    monkeypatch.undo()
    with pytest.raises(ModelFileError, match=r"newer napari-unet.*upgrade"):
        load_model(tmp_path / "new.pt")


def test_writing_is_atomic_and_leaves_the_old_file_when_interrupted(tmp_path):
    from napari_unet.core.data.io import atomic_write

    path = tmp_path / "m.pt"
    save_model(_model_file(), path)
    before = path.read_bytes()

    def interrupted_write(target):
        target.write_bytes(before[: len(before) // 2])  # half a file, then Ctrl-C
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted_write)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


def test_temporaries_of_killed_writers_are_cleaned_up_by_the_next_save(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    orphan = tmp_path / f".m.pt.{dead.stdout.strip()}.abc123.pt"  # as `kill -9` leaves it
    orphan.write_bytes(b"half a model")
    alive = tmp_path / f".m.pt.{os.getppid()}.xyz789.pt"  # another live process's write
    alive.write_bytes(b"in progress")
    save_model(_model_file(), tmp_path / "m.pt")
    assert not orphan.exists() and alive.exists()
    load_model(tmp_path / "m.pt")


@pytest.fixture
def small_disk(tmp_path):
    """Mount a real tmpfs: ``small_disk("size=256k")``, ``small_disk("ro")`` (needs root, as
    in CI); unmounted afterwards."""
    import subprocess

    mounted = []

    def mount(options):
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True)  # fmt: skip
        if done.returncode:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def test_a_full_disk_gives_a_clear_error_and_keeps_the_previous_file(small_disk):
    full_disk = small_disk("size=256k")
    small = _model_file()
    path = save_model(small, full_disk / "m.pt")
    before = path.read_bytes()
    (full_disk / "filler").write_bytes(b"0" * (256 * 1024 - 2 * len(before)))
    big = _model_file(UNetConfig(depth=2, base_features=16))
    with pytest.raises(
        UserInputError,
        match=r"cannot write .*m\.pt: the disk is full; the existing file is untouched",
    ):
        save_model(big, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler", "m.pt"]


def test_a_read_only_folder_gives_a_clear_error(small_disk):
    read_only = small_disk("ro,size=64k")
    with pytest.raises(
        UserInputError,
        match=r"no permission to write in .*disk0 \(read-only\?\); nothing was written",
    ):
        save_model(_model_file(), read_only / "m.pt")


def test_file_holds_only_plain_data_and_tensors(tmp_path):
    save_model(_model_file(), tmp_path / "m.pt")
    with zipfile.ZipFile(tmp_path / "m.pt") as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        data = archive.read(pkl)
    # Only the torch rebuild helpers and collections.OrderedDict may be referenced.
    globals_used = {op[1] for op in pickle_ops(data) if op[0] in ("GLOBAL", "STACK_GLOBAL")}
    assert all(g is None or g.startswith(("torch", "collections")) for g in globals_used)


def pickle_ops(data):
    import pickletools

    return [(op.name, arg) for op, arg, _ in pickletools.genops(data)]


def test_importing_a_plain_state_dict(tmp_path):
    net = randomise_batchnorm(UNet(CONFIG))
    torch.save(
        {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "w.pth"
    )
    model = import_state_dict(tmp_path / "w.pth", CONFIG)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.build()(x), net(x))
    with pytest.raises(ModelFileError, match="do not match the architecture"):
        import_state_dict(tmp_path / "w.pth", UNetConfig(depth=3, base_features=4, in_channels=3))


def test_unknown_pickle_protocol_content_is_refused(tmp_path):
    (tmp_path / "raw.pt").write_bytes(b"PK" + pickle.dumps(_Exploit()))
    with pytest.raises(ModelFileError):
        load_model(tmp_path / "raw.pt")


def test_suggested_output_suits_the_kind_of_model():
    from napari_unet.core import ModelFile, Preprocessing, UNet, UNetConfig

    def model(out_channels, task):
        config = UNetConfig(depth=2, base_features=4, out_channels=out_channels)
        return ModelFile(config, Preprocessing(), UNet(config).state_dict(), task=task)

    assert model(3, {"kind": "instances", "boundary_width": 2}).suggested_output == "instances"
    assert model(2, {"kind": "semantic"}).suggested_output == "probabilities"
    assert model(4, {"kind": "semantic"}).suggested_output == "semantic"
