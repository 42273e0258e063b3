"""The U-Net as one self-contained file for bioimage.io packages (core/interop/architecture_source.py):
it imports nothing but the standard library and torch, and rebuilds the very network
napari-unet builds, for every kind of architecture."""

from __future__ import annotations

import ast
import importlib.util
import sys

import pytest
import torch

from napari_unet.core.interop.architecture_source import standalone_source, write_standalone_source
from napari_unet.core.network.unet import UNet, UNetConfig

STDLIB = {"__future__", "collections", "dataclasses", "itertools", "os", "typing", "math"}


def test_the_file_needs_only_torch():
    imported = set()
    for node in ast.walk(ast.parse(standalone_source())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import is left in the file"
            imported.add(node.module.split(".")[0])
    assert imported - STDLIB == {"torch"}


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """The file imported as bioimage.io's runners import it (a module of its own)."""
    folder = tmp_path_factory.mktemp("arch")
    name, sha256 = write_standalone_source(folder)
    assert len(sha256) == 64
    spec = importlib.util.spec_from_file_location("napari_unet_architecture_test", folder / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"spatial_dims": 3, "depth": 2, "base_features": 4},
        {"padding": "valid", "depth": 2, "base_features": 4},
        {"encoder": "mobilenet_v2", "depth": 5, "in_channels": 3, "base_features": 8},
        {"norm": "group", "upsample": "interpolate", "out_channels": 3, "base_features": 8},
        {"norm": "none", "dropout": 0.2, "out_channels": 1, "depth": 3},
    ],
    ids=["default", "3d", "valid", "mobilenet", "group-interpolate", "no-norm-sigmoid"],
)
def test_the_file_builds_the_same_network(standalone, config):
    config = UNetConfig(**config)
    torch.manual_seed(0)
    ours = UNet(config).eval()
    theirs = standalone.build_unet(**config.to_dict()).eval()
    theirs.load_state_dict(ours.state_dict())  # same names and shapes, strictly
    side = 32 if config.spatial_dims == 3 else 64
    x = torch.randn(1, config.in_channels, *(side,) * config.spatial_dims)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
