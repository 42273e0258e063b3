"""A MobileNetV2 encoder for the U-Net (Sandler et al. 2018), with torchvision's layout.

The encoder is MobileNetV2's feature blocks (inverted residuals: a 1x1 expansion, a 3x3
depthwise convolution, a linear 1x1 projection), about a tenth of the multiply-adds per pixel
of a plain U-Net encoder of the same depth. Its modules are named exactly as in torchvision's
``mobilenet_v2().features``, so an ImageNet state-dict file saved from torchvision loads into
it (:func:`load_imagenet_weights`) without torchvision being installed. The decoder is ours:
transposed-convolution upsampling and double convolutions, with the encoder's features at
strides 16, 8, 4 and 2 and a small full-resolution branch as skips.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import UserInputError

# torchvision's inverted residual settings: expansion t, channels c, repeats n, stride s.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
# Indices in ``features`` whose outputs are the skips, at strides 2, 4, 8, 16 and 32.
SKIPS = (1, 3, 6, 13, 17)
SKIP_CHANNELS = (16, 24, 32, 96, 320)
STRIDE = 32
# Weights of features[0..17] with 3 input channels: torchvision's 3,504,872 less the 1280-channel
# head (412,160) and the classifier (1,281,000).
ENCODER_PARAMETERS = 1_811_712


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
    # torchvision's Conv2dNormActivation: keys "0" (conv), "1" (batch norm).
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """torchvision's block: ``conv`` holds (expand,) depthwise, projection, norm."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_relu(c_in, hidden, 1))
        layers += [
            _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Encoder(nn.Module):
    """``features[0..17]`` of torchvision's MobileNetV2 (the 1280-channel head is not used);
    ``forward`` returns the skips at strides 2, 4, 8, 16 and 32."""

    def __init__(self, in_channels: int):
        super().__init__()
        blocks: list[nn.Module] = [_conv_bn_relu(in_channels, 32, 3, stride=2)]
        channels = 32
        for expand, c_out, repeats, stride in SETTINGS:
            for i in range(repeats):
                blocks.append(InvertedResidual(channels, c_out, stride if i == 0 else 1, expand))
                channels = c_out
        self.features = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index in SKIPS:
                skips.append(x)
        return skips


def receptive_radius() -> tuple[int, int]:
    """The encoder's reach in input pixels from a stride-32 output, and that stride: each
    3x3 convolution adds its input's scale (the stride before it) on each side."""
    radius, scale = 1, 2  # features[0]: 3x3, stride 2
    for _, _, repeats, stride in SETTINGS:
        for i in range(repeats):
            radius += scale
            if i == 0:
                scale *= stride
    return radius, scale


def load_imagenet_weights(encoder: MobileNetV2Encoder, path: str | os.PathLike) -> list[str]:
    """Load torchvision's ``mobilenet_v2`` ImageNet weights from a state-dict file on disk
    (``torch.save(mobilenet_v2(weights=...).state_dict(), path)``; never downloaded here).

    Only tensors are read (``weights_only``): a file cannot run code. The first convolution is
    adapted to the input channels: a one-channel model gets the sum of the RGB filters (a grey
    image then looks to it as that grey in RGB does to ImageNet's network), other counts their
    mean repeated. Returns the names of the encoder's tensors that were loaded.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise UserInputError(f"encoder weights file {path} does not exist") from err
    except Exception as err:
        raise UserInputError(
            f"cannot read encoder weights from {path}: not a PyTorch state-dict file ({err})"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserInputError(f"{path} holds no state dict (a mapping of names to tensors)")
    ours = encoder.state_dict()
    wanted = {k: v for k, v in state.items() if k in ours}
    missing = sorted(set(ours) - set(wanted))
    if missing:
        raise UserInputError(
            f"{path} is not torchvision's mobilenet_v2 state dict: {len(missing)} of the "
            f"encoder's {len(ours)} tensors are missing (e.g. {missing[0]})"
        )
    first = "features.0.0.weight"
    weight = wanted[first]
    in_channels = ours[first].shape[1]
    if weight.shape[1] != in_channels:
        if in_channels == 1:
            weight = weight.sum(dim=1, keepdim=True)
        else:
            weight = weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)
        wanted[first] = weight
    for name, value in wanted.items():
        if tuple(value.shape) != tuple(ours[name].shape):
            raise UserInputError(
                f"{path}: tensor {name} has shape {tuple(value.shape)}, the encoder needs "
                f"{tuple(ours[name].shape)}; is it a mobilenet_v2 of another width?"
            )
    encoder.load_state_dict(wanted)
    return sorted(wanted)
