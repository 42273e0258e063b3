"""Object ids that persist through a stack segmented slice by slice: each object takes the id
of the object it overlaps most in the slice before (as Cellpose's stitch threshold and
StarDist's matching do), so a nucleus keeps its label through z or through time."""

from __future__ import annotations

import numpy as np

from ..errors import UserInputError

#: Overlap (intersection over union) from which two objects in neighbouring slices are one.
DEFAULT_MIN_IOU = 0.25


def match_across_slices(
    labels: np.ndarray, stack_dims: int, min_iou: float = DEFAULT_MIN_IOU
) -> np.ndarray:
    """Relabel ``labels`` of shape (*stack, *spatial), segmented one slice at a time, so that
    objects keep one id along the last stack axis (z for a z-stack, t for a time series; each
    index of the axes before it separately). Objects of neighbouring slices are paired one to
    one, best overlap first, when their IoU is at least ``min_iou``; the others get new ids.
    Ids stay unique over the whole array."""
    if not 0 < min_iou <= 1:
        raise UserInputError(
            f"the overlap for matching objects across slices must be above 0 and at most 1, "
            f"got {min_iou}"
        )
    if stack_dims < 1:
        return labels
    out = np.zeros(labels.shape, np.uint32)
    next_id = 1
    for outer in np.ndindex(*labels.shape[: stack_dims - 1]):
        previous: np.ndarray | None = None
        for k in range(labels.shape[stack_dims - 1]):
            current = labels[(*outer, k)]
            relabelled, next_id = _follow(previous, current, next_id, min_iou)
            out[(*outer, k)] = relabelled
            previous = relabelled
    return out


def _follow(
    previous: np.ndarray | None, current: np.ndarray, next_id: int, min_iou: float
) -> tuple[np.ndarray, int]:
    """``current`` with the ids of the objects of ``previous`` it continues, new ids for the
    rest; returns it and the next free id."""
    ids = np.unique(current)
    ids = ids[ids > 0]
    mapping = dict.fromkeys(ids.tolist(), 0)
    if previous is not None and ids.size:
        for cur, prev in _pairs(previous, current, min_iou):
            mapping[cur] = prev
    for cur in ids.tolist():
        if mapping[cur] == 0:
            mapping[cur] = next_id
            next_id += 1
    lookup = np.zeros(int(current.max()) + 1, np.uint32)
    for cur, new in mapping.items():
        lookup[cur] = new
    return lookup[current], next_id


def _pairs(previous: np.ndarray, current: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(current id, previous id) pairs, one to one, greedily by decreasing IoU."""
    both = (previous > 0) & (current > 0)
    if not both.any():
        return []
    pairs, inter = np.unique(
        np.stack([current[both], previous[both]]).astype(np.int64), axis=1, return_counts=True
    )
    cur_ids, cur_area = np.unique(current[current > 0], return_counts=True)
    prev_ids, prev_area = np.unique(previous[previous > 0], return_counts=True)
    area_c = cur_area[np.searchsorted(cur_ids, pairs[0])]
    area_p = prev_area[np.searchsorted(prev_ids, pairs[1])]
    iou = inter / (area_c + area_p - inter)
    taken_c: set[int] = set()
    taken_p: set[int] = set()
    matched = []
    for i in np.argsort(-iou, kind="stable"):
        if iou[i] < min_iou:
            break
        c, p = int(pairs[0, i]), int(pairs[1, i])
        if c not in taken_c and p not in taken_p:
            taken_c.add(c)
            taken_p.add(p)
            matched.append((c, p))
    return matched
