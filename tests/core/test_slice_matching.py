"""Object ids that persist through a stack segmented slice by slice."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from napari_unet.core.errors import UserInputError
from napari_unet.core.predict.slice_matching import match_across_slices


def _shifted_discs(slices=6, shift=2, seed=0):
    """Four discs drifting by ``shift`` px per slice, labelled 1..4 in a shuffled order in
    each slice (as independent segmentations number them), plus the disc each label is."""
    rng = np.random.default_rng(seed)
    centres = [(20, 20), (20, 60), (60, 20), (60, 60)]
    labels = np.zeros((slices, 140, 140), np.uint32)
    truth = np.zeros_like(labels)
    for k in range(slices):
        order = rng.permutation(4)
        for disc, (y, x) in enumerate(centres):
            rr, cc = disk((y + shift * k, x + shift * k), 9, shape=labels.shape[1:])
            labels[k, rr, cc] = 10 * k + order[disc] + 1  # ids unique across slices
            truth[k, rr, cc] = disc + 1
    return labels, truth


def _one_id_per_object(matched, truth):
    return all(len(np.unique(matched[truth == disc])) == 1 for disc in np.unique(truth[truth > 0]))


def test_drifting_discs_keep_one_id_through_the_stack():
    labels, truth = _shifted_discs()
    matched = match_across_slices(labels, stack_dims=1)
    assert _one_id_per_object(matched, truth)
    assert len(np.unique(matched[matched > 0])) == 4
    assert ((matched > 0) == (labels > 0)).all()  # outlines untouched


def test_objects_that_appear_or_do_not_overlap_get_new_ids():
    labels, truth = _shifted_discs(shift=7)  # 9 px radius, 9.9 px steps: IoU 0.20
    matched = match_across_slices(labels, stack_dims=1)
    assert len(np.unique(matched[matched > 0])) == 4 * 6  # nothing continues
    assert len(np.unique(match_across_slices(labels, 1, min_iou=0.15)[matched > 0])) == 4
    # A disc that appears in slice 3 is a new object there, and the others keep theirs.
    labels, truth = _shifted_discs()
    rr, cc = disk((80, 40), 6, shape=labels.shape[1:])
    labels[3:, rr, cc] = 99
    truth[3:, rr, cc] = 5
    matched = match_across_slices(labels, stack_dims=1)
    assert _one_id_per_object(matched, truth)
    assert len(np.unique(matched[matched > 0])) == 5


def test_one_to_one_when_an_object_splits():
    labels = np.zeros((2, 20, 40), np.uint32)
    labels[0, 5:15, 5:35] = 1  # one long object ...
    labels[1, 5:15, 5:22] = 2  # ... split in two: the larger half continues it
    labels[1, 5:15, 24:35] = 3
    matched = match_across_slices(labels, stack_dims=1)
    assert matched[1, 10, 10] == matched[0, 10, 10]
    assert matched[1, 10, 30] not in (0, matched[0, 10, 10])


def test_each_time_point_of_a_time_series_of_stacks_is_matched_apart():
    labels, truth = _shifted_discs(slices=4)
    both = np.stack([labels, labels + 100 * (labels > 0)])  # (t, z, y, x)
    matched = match_across_slices(both, stack_dims=2)
    assert _one_id_per_object(matched[0], truth) and _one_id_per_object(matched[1], truth)
    assert not set(np.unique(matched[0])[1:]) & set(np.unique(matched[1])[1:])


def test_a_wrong_threshold_is_refused():
    with pytest.raises(UserInputError, match="overlap for matching"):
        match_across_slices(np.zeros((2, 4, 4), np.uint32), 1, min_iou=0)
