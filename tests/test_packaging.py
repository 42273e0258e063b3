"""What a user sees of the package on PyPI and the napari hub: links and images that work
there (absolute, into files that exist here), the licence, the project's addresses, an icon."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import yaml
from skimage import io

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
REPO = "https://github.com/napari-unet/napari-unet-torch"
RAW = "https://raw.githubusercontent.com/napari-unet/napari-unet-torch/main/"


def _targets(markdown: str) -> list[tuple[bool, str]]:
    return [(bool(b), t) for b, t in re.findall(r"(!?)\[[^\]]*\]\(([^)\s]+)\)", markdown)]


def test_readme_links_and_images_work_off_github():
    targets = _targets((ROOT / "README.md").read_text())
    assert targets
    relative = [t for _, t in targets if not t.startswith(("https://", "http://", "#"))]
    assert not relative, f"relative links break on PyPI and the napari hub: {relative}"
    for is_image, target in targets:
        if target.startswith(RAW):
            path = target[len(RAW) :]
        elif target.startswith(REPO + "/blob/main/") or target.startswith(REPO + "/tree/main/"):
            path = target.split("/main/", 1)[1].split("#")[0]
        else:
            assert not is_image, f"an image from elsewhere: {target}"
            continue
        assert (ROOT / path).exists(), f"{target} points at {path}, which does not exist"
    first_image = next(t for is_image, t in targets if is_image)
    assert first_image.endswith(".png")  # a screenshot at the top


def test_project_addresses_and_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    urls = project["urls"]
    assert urls["Source Code"] == REPO and urls["Bug Tracker"] == REPO + "/issues"
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "Neither the name" in text


def test_the_manifest_icon_is_a_packaged_square_png():
    manifest = yaml.safe_load((ROOT / "src" / "napari_unet" / "napari.yaml").read_text())
    package, resource = manifest["icon"].split(":")
    with resources.as_file(resources.files(package) / resource) as path:
        icon = io.imread(path)
    assert icon.shape[0] == icon.shape[1] >= 128 and icon.dtype == np.uint8
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert resource in data["tool"]["setuptools"]["package-data"]["napari_unet"]
