import pytest
import torch

from napari_unet.core import UNet, UNetConfig, UserInputError, receptive_radius


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
def test_output_shape_matches_any_input_shape(dims, depth, upsample):
    config = UNetConfig(
        spatial_dims=dims,
        in_channels=2,
        out_channels=3,
        depth=depth,
        base_features=2,
        upsample=upsample,
    )
    net = UNet(config).eval()
    size = (5, 19, 11)[:dims] if dims == 3 else (19, 30)
    out = net(torch.randn(2, 2, *size))
    assert out.shape == (2, 3, *size)


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_every_norm_builds_and_trains(norm):
    net = UNet(UNetConfig(depth=2, base_features=8, norm=norm, dropout=0.1))
    out = net(torch.randn(2, 1, 32, 32))
    out.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_classic_unet_has_the_standard_parameter_count():
    # Ronneberger's U-Net as commonly implemented (3 in, 2 out, 64 base, depth 4, batch norm,
    # bias-free convolutions before it, transposed-convolution upsampling).
    net = UNet(UNetConfig(in_channels=3, out_channels=2, depth=4, base_features=64))
    assert net.num_parameters() == 31_037_698


@pytest.mark.parametrize("upsample", ["transpose", "interpolate"])
def test_receptive_radius_bounds_the_real_field_of_view(upsample):
    config = UNetConfig(depth=3, base_features=4, upsample=upsample, norm="none")
    net = UNet(config).eval()
    size = 256
    x = torch.randn(1, 1, size, size, requires_grad=True)
    net(x)[0, :, size // 2, size // 2].sum().backward()
    touched = (x.grad[0, 0].abs() > 0).nonzero()
    reach = (touched - size // 2).abs().max().item()
    radius = receptive_radius(config)
    assert reach <= radius
    assert reach >= 0.75 * radius  # the bound is not wildly conservative


def test_wrong_input_gives_clear_errors():
    net = UNet(UNetConfig(in_channels=3))
    with pytest.raises(UserInputError, match="expects 3 input channel"):
        net(torch.randn(1, 1, 32, 32))
    with pytest.raises(UserInputError, match=r"expects a tensor \(N, C, Y, X\)"):
        net(torch.randn(3, 32, 32))


def test_config_validation_and_round_trip():
    config = UNetConfig(spatial_dims=3, depth=2, norm="group")
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UserInputError, match="norm must be one of"):
        UNetConfig(norm="layer")
    with pytest.raises(UserInputError, match="unknown U-Net config keys"):
        UNetConfig.from_dict({"depht": 3})


def test_the_papers_valid_unet_maps_572_to_388():
    config = UNetConfig(depth=4, base_features=4, padding="valid")
    assert config.valid_margin == 92 and receptive_radius(config) == 92 + 15
    assert config.valid_output_size(572) == 388 and config.valid_input_size(388) == 572
    assert config.valid_output_size(573) is None  # a pooling would meet an odd size
    net = UNet(config).train()
    assert net(torch.randn(1, 1, 572, 572)).shape == (1, 2, 388, 388)
    with pytest.raises(UserInputError, match="cannot take a tile of 573 pixels"):
        net(torch.randn(1, 1, 573, 572))
    # In prediction the input is mirrored by the margin: the output covers any input size.
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 300, 217)).shape == (1, 2, 300, 217)
    # Same parameter count as the padded network: only the geometry differs.
    same = UNet(UNetConfig(depth=4, base_features=4))
    assert net.num_parameters() == same.num_parameters()


def test_a_valid_unet_looks_its_margin_far_plus_the_pooling_phase():
    config = UNetConfig(depth=3, base_features=4, norm="none", padding="valid")
    net = UNet(config).eval()
    size = 200
    x = torch.randn(1, 1, size, size, requires_grad=True)
    net(x)[0, :, size // 2, size // 2].sum().backward()
    touched = (x.grad[0, 0].abs() > 0).nonzero()
    reach = (touched - size // 2).abs().max().item()
    assert config.valid_margin == 44
    assert config.valid_margin <= reach <= receptive_radius(config) == 44 + 7
