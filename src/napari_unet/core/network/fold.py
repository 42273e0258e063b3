"""Batch norm folded into the convolutions, for prediction only (not part of the network's
definition, so it stays out of the file bioimage.io packages carry)."""

from __future__ import annotations

import torch
from torch import nn

from .unet import UNet


def fold_batchnorm(model: UNet) -> UNet:
    """Fold every eval-mode batch norm into the convolution before it, in place; returns ``model``.

    For inference only: the running statistics become a scale of the convolution's weights and
    a bias, and the norm layers become identities. The output is unchanged (up to float
    rounding) and the memory-bound normalisation pass over every activation disappears, about
    a quarter of a CPU forward pass (``benchmarks/prediction_speed.py``). Training needs the
    unfolded network: call this on a copy used for prediction.
    """
    model.eval()
    for block in model.modules():
        if not isinstance(block, nn.Sequential):
            continue
        layers = list(block)
        for i in range(len(layers) - 1):
            conv, norm = layers[i], layers[i + 1]
            if not (
                isinstance(conv, (nn.Conv2d, nn.Conv3d))
                and isinstance(norm, nn.modules.batchnorm._BatchNorm)
                and norm.track_running_stats
            ):
                continue
            # tracked running statistics are tensors (checked above)
            assert norm.running_var is not None and norm.running_mean is not None
            with torch.no_grad():
                scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                shape = (-1,) + (1,) * (conv.weight.ndim - 1)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
                conv.weight.mul_(scale.reshape(shape))
                conv.bias = nn.Parameter(norm.bias + (bias - norm.running_mean) * scale)
            block[i + 1] = nn.Identity()
    return model
