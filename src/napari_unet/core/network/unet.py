"""A U-Net for 2D and 3D images, built from a small frozen configuration.

The network is the classic encoder-decoder of Ronneberger et al. (2015): ``depth`` poolings,
two 3x3 convolutions per level, and skip connections. With "same" padding (the default) inputs
of any size are padded to the multiple of ``2**depth`` that the poolings need and the output is
cropped back. With the paper's "valid" padding the convolutions are unpadded and the skips are
cropped: in training a tile shrinks (depth 4: 572 x 572 in, 388 x 388 out, a margin of 92);
in prediction (eval mode) the input is mirrored by that margin, the overlap-tile strategy, so
that the output again covers every input pixel.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserInputError

NORMS = ("batch", "instance", "group", "none")
MAX_CHANNELS = 4096
# 500 million weights (2 GB in float32): 16x the classic U-Net; larger is a damaged file or a typo.
MAX_PARAMETERS = 500_000_000
UPSAMPLINGS = ("transpose", "interpolate")
PADDINGS = ("same", "valid")
ENCODERS = ("unet", "mobilenet_v2")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`UNet`; saved in every model file.

    Attributes
    ----------
    spatial_dims : 2 or 3.
    in_channels : channels of the (preprocessed) input image.
    out_channels : output channels: 1 for a sigmoid foreground map, K >= 2 for K softmax classes.
    depth : number of 2x poolings; inputs are padded to a multiple of ``2**depth``.
    base_features : feature maps at full resolution; doubled at each level.
    norm : "batch", "instance", "group" or "none". Convolutions followed by a norm have no bias.
        Only "batch" and "none" make the network independent of tiling (the others normalise
        over the whole input they see).
    upsample : "transpose" (2x2 transposed convolution) or "interpolate" ((bi/tri)linear
        interpolation followed by a 1x1 convolution).
    dropout : dropout probability after each double convolution of the two deepest levels.
    groups : number of groups for group norm.
    padding : "same" (padded convolutions: output size = input size) or "valid" (the paper's
        unpadded convolutions with cropped skips; see :meth:`valid_output_size`).
    encoder : "unet" (the classic double convolutions) or "mobilenet_v2" (torchvision's
        MobileNetV2 feature blocks, 2D, depth 5; ``base_features`` then sets the decoder's
        width; see :mod:`~napari_unet.core.network.mobilenet`).
    """

    spatial_dims: int = 2
    in_channels: int = 1
    out_channels: int = 2
    depth: int = 4
    base_features: int = 32
    norm: str = "batch"
    upsample: str = "transpose"
    dropout: float = 0.0
    groups: int = 8
    padding: str = "same"
    encoder: str = "unet"

    def __post_init__(self) -> None:
        for name in (
            "spatial_dims",
            "in_channels",
            "out_channels",
            "depth",
            "base_features",
            "groups",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise UserInputError(f"{name} must be a whole number, got {value!r}")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool):
            raise UserInputError(f"dropout must be a number, got {self.dropout!r}")
        if self.spatial_dims not in (2, 3):
            raise UserInputError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if self.norm not in NORMS:
            raise UserInputError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.padding not in PADDINGS:
            raise UserInputError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.encoder not in ENCODERS:
            raise UserInputError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "mobilenet_v2" and (
            self.spatial_dims != 3 and (self.depth != 5 or self.padding != "same")
        ):
            raise UserInputError(
                "the MobileNetV2 encoder has 5 stride-2 stages and padded convolutions: use "
                f"depth 5 and same padding (got depth {self.depth}, {self.padding} padding)"
            )
        if self.encoder == "mobilenet_v2" and self.spatial_dims == 3:
            raise UserInputError("the MobileNetV2 encoder is 2D only; use the U-Net encoder in 3D")
        if self.upsample not in UPSAMPLINGS:
            raise UserInputError(f"upsample must be one of {UPSAMPLINGS}, got {self.upsample!r}")
        if not 1 <= self.depth <= 7:
            raise UserInputError(f"depth must be between 1 and 7, got {self.depth}")
        if self.in_channels < 1 or self.out_channels < 1 or self.base_features < 1:
            raise UserInputError("in_channels, out_channels and base_features must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise UserInputError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("in_channels", "out_channels", "base_features"):
            if getattr(self, name) > MAX_CHANNELS:
                raise UserInputError(
                    f"{name} must be at most {MAX_CHANNELS}, got {getattr(self, name)}"
                )
        if self.groups < 1:
            raise UserInputError(f"groups must be >= 1, got {self.groups}")
        millions = self.parameter_estimate() / 1e6
        if millions > MAX_PARAMETERS / 1e6:
            raise UserInputError(
                f"a U-Net with base_features {self.base_features} and depth {self.depth} in "
                f"{self.spatial_dims}D has about {millions:,.0f} million parameters; at most "
                f"{MAX_PARAMETERS / 1e6:,.0f} million are allowed (the classic U-Net has 31)"
            )

    def parameter_estimate(self) -> int:
        """Weights of the convolutions (within a few percent): two k^d convolutions per level
        on the way down and on the way up, the upsampling and the 1x1 head."""
        kernel = 3**self.spatial_dims
        if self.encoder == "mobilenet_v2":
            from .mobilenet import ENCODER_PARAMETERS, SKIP_CHANNELS

            decoder = 0
            widths = _mobilenet_decoder_widths(self.base_features)
            for c_in, skip, c_out in zip(
                (SKIP_CHANNELS[-1], *widths[:-1]),
                (*reversed(SKIP_CHANNELS[:-1]), widths[-1]),
                widths,
                strict=True,
            ):
                decoder += 4 * c_in * c_out + kernel * ((c_out + skip) * c_out + c_out * c_out)
            full = kernel * (self.in_channels + self.base_features) * self.base_features
            return ENCODER_PARAMETERS + decoder + full + widths[-1] * self.out_channels
        widths = tuple(self.base_features * 2**level for level in range(self.depth + 1))
        down = kernel * (self.in_channels * widths[0] + widths[0] ** 2)
        down += sum(kernel * (a * b + b * b) for a, b in itertools.pairwise(widths))
        up = sum(kernel * (2 * a * a + a * a) + 2**self.spatial_dims * b * a
                 for a, b in itertools.pairwise(widths))  # fmt: skip
        return down + up + widths[0] * self.out_channels

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the network sees are padded to a multiple of this."""
        return 2**self.depth

    @property
    def valid_margin(self) -> int:
        """Pixels a "valid" network loses on each side (depth 4: 92, so 572 -> 388); 0 for
        "same". Each level's four 3x3 convolutions lose 2 pixels each at its scale, and the
        bottleneck's two lose 2 at the deepest scale."""
        if self.padding == "same":
            return 0
        return 4 * (2**self.depth - 1) + 2 * 2**self.depth

    def valid_output_size(self, size: int) -> int | None:
        """The output edge of a "valid" network for an input edge, or None when the poolings
        would meet an odd size (the input is then not a valid tile size)."""
        for _ in range(self.depth):
            size -= 4
            if size <= 0 or size % 2:
                return None
            size //= 2
        size -= 4
        if size <= 0:
            return None
        return size * 2**self.depth - 4 * (2**self.depth - 1)

    def valid_input_size(self, output: int) -> int:
        """The smallest valid input edge whose output covers at least ``output`` pixels."""
        smallest = 2**self.depth * 2 - 4 * (2**self.depth - 1)  # a bottleneck of 2 pixels
        size = max(output, smallest)
        while self.valid_output_size(size + 2 * self.valid_margin) is None:
            size += 1
        return size + 2 * self.valid_margin

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Written only when they differ from the classic network, so that the model files of
        # classic U-Nets stay readable by napari-unet versions without these options.
        for name, classic in (("padding", "same"), ("encoder", "unet")):
            if data[name] == classic:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Build a config, refusing unknown keys so typos do not pass silently."""
        if not isinstance(data, dict):
            raise UserInputError(f"the U-Net config must map names to values, got {data!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserInputError(
                f"unknown U-Net config keys {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**data)


def receptive_radius(config: UNetConfig) -> int:
    """Upper bound, in input pixels, on how far from an output pixel the network looks.

    A "valid" network loses its margin on each side, but its poolings make the field of an
    output pixel lopsided by the pooling phase: up to ``2**depth - 1`` more on one side.

    Each 3x3 convolution at level ``l`` (scale ``2**l``) widens the field by ``2**l`` on each
    side; a 2x2 pooling by ``2**l``; an upsampling from level ``l+1`` by ``2**l`` (transposed)
    or ``2**(l+1)`` (linear interpolation reads both neighbours). The deepest path dominates the
    skip connections. The tiler uses this as the halo that makes tiled output exact.
    """
    if config.padding == "valid":
        return config.valid_margin + 2**config.depth - 1
    if config.encoder == "mobilenet_v2":
        from .mobilenet import receptive_radius as encoder_reach

        radius, scale = encoder_reach()
        while scale > 1:  # decoder: an upsampling and two 3x3 convolutions per stage
            scale //= 2
            radius += scale + 2 * scale
        return radius
    radius = 0
    for level in range(config.depth):
        scale = 2**level
        radius += 2 * scale  # two encoder convolutions
        radius += scale  # pooling to the next level
        radius += 2 * scale  # two decoder convolutions
        radius += scale if config.upsample == "transpose" else 2 * scale
    radius += 2 * 2**config.depth  # bottleneck convolutions
    return radius


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv2d if dims == 2 else nn.Conv3d


def _norm(config: UNetConfig, channels: int) -> nn.Module:
    if config.norm == "batch":
        return (nn.BatchNorm2d if config.spatial_dims == 2 else nn.BatchNorm3d)(channels)
    if config.norm == "instance":
        cls = nn.InstanceNorm2d if config.spatial_dims == 2 else nn.InstanceNorm3d
        return cls(channels, affine=True)
    if config.norm == "group":
        return nn.GroupNorm(min(config.groups, channels), channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) twice, optionally followed by dropout."""

    def __init__(self, config: UNetConfig, in_ch: int, out_ch: int, dropout: float = 0.0):
        conv = _conv(config.spatial_dims)
        bias = config.norm == "none"
        pad = 1 if config.padding == "same" else 0
        layers: list[nn.Module] = []
        for c_in in (in_ch, out_ch):
            layers += [
                conv(c_in, out_ch, kernel_size=3, padding=pad, bias=bias),
                _norm(config, out_ch),
                nn.ReLU(inplace=True),
            ]
        if dropout > 0:
            layers.append((nn.Dropout2d if config.spatial_dims == 2 else nn.Dropout3d)(dropout))
        super().__init__(*layers)


class Up(nn.Module):
    """Upsample by 2, halve the channels, concatenate the skip connection, double conv.

    ``up_ch`` and ``skip_ch`` (default ``in_ch // 2`` and ``out_ch``) are the channels after
    upsampling and of the skip, for encoders whose widths do not simply double.
    """

    def __init__(
        self,
        config: UNetConfig,
        in_ch: int,
        out_ch: int,
        dropout: float = 0.0,
        *,
        up_ch: int | None = None,
        skip_ch: int | None = None,
    ):
        super().__init__()
        dims = config.spatial_dims
        up_ch = up_ch or in_ch // 2
        if config.upsample == "transpose":
            cls = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
            self.up: nn.Module = cls(in_ch, up_ch, kernel_size=2, stride=2)
        else:
            mode = "bilinear" if dims == 2 else "trilinear"
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode=mode, align_corners=False),
                _conv(dims)(in_ch, up_ch, kernel_size=1),
            )
        self.conv = DoubleConv(config, up_ch + (skip_ch or out_ch), out_ch, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if skip.shape[2:] != x.shape[2:]:  # "valid": copy and crop, as in the paper
            skip = skip[_spatial(_centre(skip.shape[2:], x.shape[2:]))]
        merged = torch.cat([skip, x], dim=1)
        # Drop the last references to the inputs before the convolutions, so that in
        # prediction the skip tensor is freed now rather than with this frame (a quarter
        # less peak memory at full resolution).
        del x, skip
        return self.conv(merged)


def _mobilenet_decoder_widths(base: int) -> tuple[int, ...]:
    """Decoder widths at strides 16, 8, 4, 2 and 1 for a MobileNetV2 encoder."""
    return (8 * base, 4 * base, 2 * base, base, base)


class Network(Protocol):
    """What the tiler runs: a module whose ``config`` says its channels, dimensions and the
    size multiple it needs (:class:`UNet`, a bioimage.io package's network, or either with
    test-time augmentation)."""

    config: Any

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def eval(self) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


def _spatial(index: Iterable[slice]) -> tuple[Any, ...]:
    """An index of the trailing (spatial) axes of a tensor, whatever comes before them."""
    return (..., *index)


def _centre(size: Sequence[int], inner: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice((s - i) // 2, (s - i) // 2 + i) for s, i in zip(size, inner, strict=True))


class UNet(nn.Module):
    """U-Net returning raw logits of shape (N, out_channels, *spatial).

    Any spatial size is accepted: the input is padded at the end of each axis to a multiple of
    ``2**depth`` (reflection, or edge replication when an axis is too short to reflect) and the
    output is cropped back to the input size. A "valid" network does the same in eval mode,
    after mirroring the input by its margin on every side; in training mode it takes a valid
    tile size (see :meth:`UNetConfig.valid_output_size`) and returns the smaller centre, so
    that it learns from real context only.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        if config.encoder == "mobilenet_v2":
            self._build_mobilenet(config)
            return
        widths = [config.base_features * 2**level for level in range(config.depth + 1)]
        pool = nn.MaxPool2d if config.spatial_dims == 2 else nn.MaxPool3d
        # Dropout only in the two deepest levels, where the classic U-Net put it.
        deep = {config.depth - 1, config.depth}
        drop = [config.dropout if lvl in deep else 0.0 for lvl in range(config.depth + 1)]
        self.inc = DoubleConv(config, config.in_channels, widths[0], drop[0])
        self.pool = pool(2)
        self.down = nn.ModuleList(
            DoubleConv(config, widths[lvl], widths[lvl + 1], drop[lvl + 1])
            for lvl in range(config.depth)
        )
        self.up = nn.ModuleList(
            Up(config, widths[lvl + 1], widths[lvl], drop[lvl])
            for lvl in reversed(range(config.depth))
        )
        self.head = _conv(config.spatial_dims)(widths[0], config.out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = self.config.spatial_dims
        if x.ndim != dims + 2:
            raise UserInputError(
                f"U-Net ({dims}D) expects a tensor (N, C, {'Z, ' if dims == 3 else ''}Y, X), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.config.in_channels:
            raise UserInputError(
                f"model expects {self.config.in_channels} input channel(s), got {x.shape[1]}"
            )
        size = tuple(x.shape[2:])
        if self.config.padding == "valid":
            if self.training:
                return self.forward_valid(x)
            out = self.forward_valid(pad_for_valid(x, self.config))
            return out[_spatial(slice(0, s) for s in size)]
        x = pad_to_multiple(x, self.config.size_multiple)
        out = self._forward(x)
        return out[_spatial(slice(0, s) for s in size)]

    def forward_valid(self, x: torch.Tensor) -> torch.Tensor:
        """A "valid" network on an input of a valid size, without padding: the output is the
        input less :attr:`UNetConfig.valid_margin` on every side (the paper's 572 -> 388)."""
        wrong = [s for s in x.shape[2:] if self.config.valid_output_size(s) is None]
        if wrong:
            good = self.config.valid_input_size(wrong[0] - 2 * self.config.valid_margin)
            raise UserInputError(
                f"a valid-padding U-Net of depth {self.config.depth} cannot take a tile of "
                f"{wrong[0]} pixels (its poolings would meet an odd size); e.g. {good} can"
            )
        return self._forward(x)

    def _build_mobilenet(self, config: UNetConfig) -> None:
        from .mobilenet import SKIP_CHANNELS, MobileNetV2Encoder

        widths = _mobilenet_decoder_widths(config.base_features)
        self.encoder = MobileNetV2Encoder(config.in_channels)
        # Full resolution: the encoder starts at stride 2, thin structures need this branch.
        self.inc = DoubleConv(config, config.in_channels, config.base_features)
        ins = (SKIP_CHANNELS[-1], *widths[:-1])
        skips = (*reversed(SKIP_CHANNELS[:-1]), config.base_features)
        self.up = nn.ModuleList(
            Up(config, c_in, c_out, up_ch=c_out, skip_ch=skip)
            for c_in, c_out, skip in zip(ins, widths, skips, strict=True)
        )
        self.head = nn.Conv2d(widths[-1], config.out_channels, kernel_size=1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.encoder == "mobilenet_v2":
            skips = [self.inc(x), *self.encoder(x)]
            out = skips.pop()
            for block in self.up:
                out = block(out, skips.pop())
            return self.head(out)
        skips = [self.inc(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        out = skips.pop()
        for block in self.up:
            out = block(out, skips.pop())
        return self.head(out)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def activation(logits: torch.Tensor) -> torch.Tensor:
    """Logits to probabilities: sigmoid for one output channel, softmax over channels otherwise."""
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)


def build_unet(**config: Any) -> UNet:
    """A :class:`UNet` from its config's fields as keyword arguments.

    The architecture entry point named in the bioimage.io packages napari-unet writes
    (``import_from: napari_unet.core.network.unet``, ``callable: build_unet``), so that the reference
    tools can rebuild the network from its ``pytorch_state_dict`` weights.
    """
    return UNet(UNetConfig.from_dict(config))


def padding_mode(shape: tuple[int, ...], pads: tuple[int, ...]) -> str:
    """Reflection when every axis is long enough to reflect its padding, else edge replication.

    Shared by :class:`UNet` and the tiler so that both pad a whole image identically.
    """
    return "reflect" if all(p < s for s, p in zip(shape, pads, strict=True)) else "replicate"


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the spatial axes of (N, C, *spatial) at their end to a multiple of ``multiple``."""
    size = tuple(x.shape[2:])
    pads = tuple(-s % multiple for s in size)
    if not any(pads):
        return x
    mode = padding_mode(size, pads)
    flat: list[int] = []
    for p in reversed(pads):  # F.pad wants the last axis first
        flat += [0, p]
    return F.pad(x, flat, mode=mode)


def pad_for_valid(x: torch.Tensor, config: UNetConfig) -> torch.Tensor:
    """Mirror (N, C, *spatial) by a "valid" network's margin on every side, plus what its
    poolings need at the end, so that its output covers every input pixel (overlap-tile)."""
    margin = config.valid_margin
    flat: list[int] = []
    pads: list[int] = []
    for s in reversed(x.shape[2:]):  # F.pad wants the last axis first
        after = config.valid_input_size(s) - s - margin
        flat += [margin, after]
        pads += [margin, after]
    mode = "reflect" if all(p < s for s in x.shape[2:] for p in pads) else "replicate"
    return F.pad(x, flat, mode=mode)
