"""Segmentation losses that skip unannotated pixels (target == IGNORE).

Each loss takes log-probabilities and probabilities, so the same code scores training logits
and validation probabilities. With one output channel the model is a sigmoid foreground map;
with K >= 2 channels, a softmax over K classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserInputError

IGNORE = -1
LOSSES = ("ce", "dice", "ce+dice")


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-class log-probabilities (N, K', ...); a 1-channel sigmoid becomes 2 classes."""
    if logits.shape[1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1)
    return F.log_softmax(logits, dim=1)


def cross_entropy(logp: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over annotated pixels (0 when none are annotated)."""
    labelled = target != IGNORE
    if not labelled.any():
        return logp.sum() * 0.0
    return F.nll_loss(logp, target.clamp_min(0), reduction="none")[labelled].mean()


def soft_dice(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, averaged over foreground classes, over annotated pixels of the batch."""
    classes = prob.shape[1]
    labelled = (target != IGNORE).unsqueeze(1).to(prob.dtype)
    onehot = F.one_hot(target.clamp_min(0), classes).movedim(-1, 1).to(prob.dtype)
    dims = (0, *range(2, prob.ndim))
    p = (prob * labelled)[:, 1:]
    t = (onehot * labelled)[:, 1:]
    dice = (2 * (p * t).sum(dims) + smooth) / (p.sum(dims) + t.sum(dims) + smooth)
    return 1 - dice.mean()


def segmentation_loss(
    logp: torch.Tensor, target: torch.Tensor, kind: str = "ce+dice"
) -> torch.Tensor:
    """The training loss: "ce" (cross-entropy / BCE), "dice" (soft Dice) or their sum."""
    if kind not in LOSSES:
        raise UserInputError(f"loss must be one of {LOSSES}, got {kind!r}")
    loss = logp.new_zeros(())
    if "ce" in kind.split("+"):
        loss = loss + cross_entropy(logp, target)
    if "dice" in kind.split("+"):
        loss = loss + soft_dice(logp.exp(), target)
    return loss
