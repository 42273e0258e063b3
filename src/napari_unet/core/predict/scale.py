"""Which grid a model sees a user's image on: the factor that brings the image's structures to
the size the model was trained at (:class:`~napari_unet.core.data.object_size.ObjectScale`).

The choice, in order: a factor or a structure size the user gives; pixel sizes, when both
the image and the model know theirs; else (``"auto"``) an estimate from the image itself,
calibrated on the model's training images, checked after prediction against the size of what
the model found (:func:`refined`). ``"native"`` keeps the image's own grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .. import limits
from ..data.field_of_view import source_field_of_view
from ..data.normalize import BlockSource, ImageSource
from ..data.object_size import ObjectScale, blob_diameter, centre_view, equivalent_diameters
from ..data.pixel_size import in_micrometres
from ..errors import UserInputError

#: Factors this close to 1 are not worth resampling for: models are trained with some size
#: variation, and resampling costs time and blurs a little.
NATIVE_BAND = 1.2
#: The estimate is checked on the prediction: when the objects found are further than this
#: from the model's size, prediction runs once more at the corrected factor.
REFINE_BAND = 1.3
MIN_OBJECTS_TO_REFINE = 5
FACTOR_RANGE = (1 / 8, 8.0)

OBJECT_SIZE_HELP = (
    "auto (estimate the size of the structures in each image and rescale it to the model's "
    "training size), native (no rescaling), a size in pixels (object diameter, or width of thin "
    "structures such as vessels), or a factor such as x0.5"
)


@dataclass(frozen=True)
class ScaleChoice:
    """The grid a prediction runs on. ``factors``: per spatial axis, model grid / image grid
    (1: the image's own grid); ``found``: the structure size in the image, pixels (estimated
    or given; None when not known); ``how`` says where the factor came from."""

    factors: tuple[float, ...]
    found: float | None
    model_size: float | None
    how: str
    noun: str = "object diameter"

    @property
    def factor(self) -> float:
        """The mean factor (the factor, for isotropic rescaling)."""
        return float(np.exp(np.mean(np.log(self.factors))))

    @property
    def native(self) -> bool:
        return all(f == 1 for f in self.factors)

    def describe(self) -> str:
        """One line: what was found and what was done (the CLI prints it, the widget shows it)."""
        parts = []
        if self.found is not None:
            parts.append(f"{self.noun} ~{self.found:.1f} px ({self.how})")
        if self.model_size is not None:
            parts.append(f"model trained at {self.model_size:.1f} px")
        if self.native:
            parts.append("no rescaling" if self.how != "native" else "native grid (as asked)")
        else:
            shown = " x ".join(f"{f:.3g}" for f in dict.fromkeys(self.factors))
            parts.append(f"rescaled x{shown}")
        if self.found is None and self.how not in ("native",):
            parts.insert(0, self.how)
        return "; ".join(parts)


def parse_object_size(text: str | float | None) -> str | float | tuple[str, float]:
    """``"auto"``, ``"native"``, a size in pixels (a number) or ``("factor", f)`` from what a
    user typed: auto, native, 30, 30px, x0.5 or 0.5x."""
    if text is None:
        return "auto"
    if isinstance(text, (int, float)):
        return _checked_size(float(text))
    value = str(text).strip().lower()
    if value in ("auto", "native"):
        return value
    try:
        if value.startswith("x") or value.endswith("x"):
            factor = float(value.strip("x"))
            if not (math.isfinite(factor) and FACTOR_RANGE[0] <= factor <= FACTOR_RANGE[1]):
                raise UserInputError(
                    f"object size factor {value} is outside {FACTOR_RANGE[0]:g}-{FACTOR_RANGE[1]:g}"
                )
            return ("factor", factor)
        return _checked_size(float(value.removesuffix("px")))
    except ValueError as err:
        if isinstance(err, UserInputError):
            raise
        raise UserInputError(
            f"object size must be auto, native, a size in pixels (e.g. 30) or a factor (e.g. "
            f"x0.5), got {text!r}"
        ) from None


def _checked_size(size: float) -> float:
    limits.check("object_size", size, "object size")
    return size


def choose_scale(
    scale: ObjectScale | None,
    source: BlockSource,
    object_size: str | float | tuple[str, float] = "auto",
    *,
    pixel_size: tuple[float, ...] | None = None,
) -> ScaleChoice:
    """The grid to predict ``source`` (the model's input on the image's grid) on, for a model
    trained at ``scale``; ``object_size`` as :func:`parse_object_size` returns it;
    ``pixel_size``: the image's in micrometres, per spatial axis, when its file or layer says
    (:mod:`~napari_unet.core.data.pixel_size`)."""
    dims = len(source.shape)
    object_size = parse_object_size(object_size) if isinstance(object_size, str) else object_size
    noun = scale.noun if scale else "object diameter"
    model_size = scale.size if scale else None
    if object_size == "native":
        return ScaleChoice((1.0,) * dims, None, model_size, "native", noun)
    if isinstance(object_size, tuple):
        factor = object_size[1]
        found = model_size / factor if model_size else None
        return ScaleChoice((factor,) * dims, found, model_size, "given factor", noun)
    if isinstance(object_size, float):
        if scale is None:
            raise UserInputError(
                "this model does not say what size it was trained at, so an object size in "
                "pixels cannot be turned into a rescaling: give a factor instead (e.g. x0.5)"
            )
        factor = target_factor(object_size, scale)
        return _snapped(factor, dims, object_size, scale, "given")
    if scale is None:
        return ScaleChoice((1.0,) * dims, None, None, "the model does not know its scale", noun)
    model_pixels = in_micrometres(scale.pixel_size, scale.unit) if scale.pixel_size else None
    if pixel_size and model_pixels and len(pixel_size) == len(model_pixels) == dims:
        factors = tuple(_clamped(p / q) for p, q in zip(pixel_size, model_pixels, strict=True))
        found = scale.size * float(np.mean(model_pixels)) / float(np.mean(pixel_size))
        return ScaleChoice(factors, found, scale.size, "pixel sizes", noun)
    return estimated(scale, source, _to_model_aspect(scale, pixel_size, dims))


#: Zooms this close to 1 are not worth resampling for (a z step a few percent off).
ASPECT_BAND = 1.05


def _to_model_aspect(
    scale: ObjectScale, pixel_size: tuple[float, ...] | None, dims: int
) -> tuple[float, ...] | None:
    """For a 3D image whose pixel sizes are known (the model's are not): the per-axis zoom
    that gives its objects the aspect they had on the model's training grid (isotropic when
    the model does not say); None when there is nothing to correct."""
    if dims != 3 or not pixel_size or len(pixel_size) != 3:
        return None
    aspect = scale.aspect or (1.0, 1.0, 1.0)
    zoom = tuple(a * p / pixel_size[-1] for a, p in zip(aspect, pixel_size, strict=True))
    return None if all(abs(math.log(z)) < math.log(ASPECT_BAND) for z in zoom) else zoom


def estimated(
    scale: ObjectScale, source: BlockSource, zoom: tuple[float, ...] | None = None
) -> ScaleChoice:
    """The factor from an estimate of the structure size in ``source``: objects from a centre
    view (:func:`blob_diameter`), thin structures from a fundus photograph's field of view
    (:func:`source_field_of_view`), each calibrated on the model's training images."""
    dims = len(source.shape)
    if not scale.calibration:
        return ScaleChoice(
            (1.0,) * dims, None, scale.size, "the model holds no size calibration", scale.noun
        )
    if scale.kind == "widths":
        diameter = source_field_of_view(source)
        if diameter is None:
            why = (
                "no round field of view to size thin structures by (fundus photographs have "
                "one; give a width in pixels)"
            )
            return ScaleChoice((1.0,) * dims, None, scale.size, why, scale.noun)
        found = diameter * scale.calibration
        return _snapped(target_factor(found, scale), dims, found, scale, "from the field of view")
    view = source.read(centre_view(source.shape))
    if zoom is not None:  # an anisotropic stack: measured at the model's aspect
        view = ndi.zoom(view, (1, *zoom), order=1)
    raw = blob_diameter(view)
    if raw is None:
        return ScaleChoice((1.0,) * dims, None, scale.size, "no objects to measure", scale.noun)
    found = raw * scale.calibration
    choice = _snapped(target_factor(found, scale), dims, found, scale, "estimated")
    return _anisotropic(choice, zoom) if zoom is not None else choice


def _anisotropic(choice: ScaleChoice, zoom: tuple[float, ...]) -> ScaleChoice:
    """``choice`` (isotropic) times the per-axis ``zoom``; axes left within
    :data:`NATIVE_BAND` of 1 are not resampled."""
    factors = tuple(_clamped(f * z) for f, z in zip(choice.factors, zoom, strict=True))
    factors = tuple(
        1.0 if abs(math.log(f)) < math.log(NATIVE_BAND) else round(f, 4) for f in factors
    )
    return ScaleChoice(factors, choice.found, choice.model_size, choice.how, choice.noun)


def _clamped(factor: float) -> float:
    return float(min(max(factor, FACTOR_RANGE[0]), FACTOR_RANGE[1]))


def target_factor(found: float, scale: ObjectScale) -> float:
    """The factor for structures of ``found`` pixels.

    Objects: 1 when they lie among the sizes the model was trained on (between its
    quartiles: it learnt them all), else the factor that brings them halfway (geometrically)
    from the nearest quartile to the median. Measured on 40 DSB2018 val images
    (benchmarks/scale_sweep.py's data) rescaled by 0.5, 1 and 3, object F1@0.5: to the median
    0.791 / 0.807 / 0.814, to the nearest quartile 0.791 / 0.825 / 0.795, halfway 0.798 /
    0.826 / 0.807 (native: 0.670 / 0.824 / 0.524).

    Widths: to the median. Their quartiles span a vessel tree's capillaries to its trunks
    within each image, not a tolerance to the scale of the whole image.
    """
    if scale.kind == "widths":
        return scale.size / found
    if scale.low <= found <= scale.high:
        return 1.0
    edge = min(max(found, scale.low), scale.high)
    return math.sqrt(edge * scale.size) / found


def _snapped(factor: float, dims: int, found: float, scale: ObjectScale, how: str) -> ScaleChoice:
    """Factors within :data:`NATIVE_BAND` of 1 become 1 (no resampling)."""
    factor = _clamped(factor)
    if 1 / NATIVE_BAND <= factor <= NATIVE_BAND:
        factor = 1.0
    return ScaleChoice((round(factor, 4),) * dims, found, scale.size, how, scale.noun)


def found_size(labels: np.ndarray, scale: ObjectScale, instances: bool) -> tuple[float, int] | None:
    """The median size of the objects in a prediction (on the model's grid) and their count;
    None for thin structures or too few objects."""
    if scale.kind != "objects":
        return None
    objects = labels if instances else ndi.label(labels > 0)[0]
    sizes = equivalent_diameters(objects)
    if sizes.size < MIN_OBJECTS_TO_REFINE:
        return None
    return float(np.median(sizes)), int(sizes.size)


def refined(choice: ScaleChoice, measured: float, scale: ObjectScale) -> ScaleChoice | None:
    """After predicting at an estimated factor: a corrected choice when the objects found
    (median ``measured`` pixels on the model's grid) lie outside the sizes the model was
    trained on by more than :data:`REFINE_BAND`, else None (the estimate is confirmed)."""
    if choice.how != "estimated":
        return None
    if scale.low / REFINE_BAND <= measured <= scale.high * REFINE_BAND:
        return None
    # The last axis carries the isotropic part; an anisotropic stack keeps its ratios.
    along_x = choice.factors[-1]
    found = measured / along_x  # in the image's pixels
    factor = _clamped(target_factor(found, scale))
    if abs(math.log(factor / along_x)) < math.log(NATIVE_BAND):
        return None
    dims = len(choice.factors)
    better = _snapped(factor, dims, found, scale, "estimated, checked on the prediction")
    ratios = tuple(f / along_x for f in choice.factors)
    return better if all(r == 1 for r in ratios) else _anisotropic(better, ratios)


def estimate_image_scale(
    image: Any, model: Any, channel_axis: int | None = None
) -> tuple[ScaleChoice, tuple[int, ...]]:
    """What ``object_size="auto"`` would choose for ``image`` with ``model`` (a model file:
    its preprocessing, channels and scale) — for a stack, on its middle slice — and the
    spatial shape it looked at (the widget's *estimate* button)."""
    dims = model.config.spatial_dims
    lead = np.ndim(image) - dims - (channel_axis is not None)
    if lead > 0:
        image = image[tuple(n // 2 for n in np.shape(image)[:lead])]
        channel_axis = None if channel_axis is None else channel_axis - lead
    source = ImageSource(image, dims, model.preprocessing, model.config.in_channels, channel_axis)
    return choose_scale(model.scale, source, "auto"), source.shape
