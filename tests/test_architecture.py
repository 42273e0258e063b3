"""Structural promises: the core is GUI-free, the manifest is valid and has one source."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_no_gui_package():
    code = (
        "import sys, pkgutil, importlib, napari_unet.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'napari_unet.core.'): importlib.import_module(m.name)\n"
        "import napari_unet.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy', 'superqt'})\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, (
        f"GUI modules imported by the core or CLI: {result.stdout}{result.stderr}"
    )


def test_top_level_manifest_is_the_packaged_one():
    top, packaged = ROOT / "napari.yaml", ROOT / "src" / "napari_unet" / "napari.yaml"
    assert os.path.samefile(top, packaged)


def test_manifest_validates_and_its_commands_import():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "src" / "napari_unet" / "napari.yaml")
    manifest.validate_imports()
    assert manifest.name == "napari-unet-torch"
    assert {s.key for s in manifest.contributions.sample_data} >= {"nuclei", "retina"}


def test_sample_data_is_offline_and_well_formed():
    from napari_unet._napari.sample_data import nuclei_sample, retina_sample

    (image, _, kind), (labels, _, kind2) = nuclei_sample()
    assert (kind, kind2) == ("image", "labels") and image.shape == labels.shape == (520, 696)
    assert labels.max() == 168
    ((retina, meta, _),) = retina_sample()
    assert retina.ndim == 3 and retina.shape[-1] == 3 and meta["rgb"]
