"""The GUI-free engine of napari-unet: numpy, torch, scikit-image and tifffile only.

Everything the napari widgets and the command line do goes through here. Its rooms, each a
package that imports only those below it (tests/test_architecture.py checks):
errors, limits, metrics < network < data < models < interop < predict < train < cluster.
The names below are the public ones, re-exported so that scripts need not know the rooms.
"""

from .data import io
from .data.normalize import ImageSource, Preprocessing
from .errors import ModelFileError, TrainingDiverged, UserInputError
from .interop.open import load_any_model, load_model
from .metrics import MetricAccumulator, roc_auc
from .models.model_file import ModelFile, bundled_models, import_state_dict, save_model
from .network.devices import available_devices, resolve_device
from .network.unet import UNet, UNetConfig, receptive_radius
from .predict.inference import (
    Prediction,
    Segmenter,
    StackProgress,
    instances_from_foreground,
    iter_predict_stack,
)
from .predict.instances import InstanceAccumulator, instance_targets, instances_from_probabilities
from .predict.tiling import TileProgress, predict_tiled
from .train.data import Augmentation, TrainingPair, prepare_pair, split_for_validation
from .train.targets import labels_to_targets
from .train.trainer import TrainConfig, Trainer, TrainProgress

__all__ = [
    "Augmentation",
    "ImageSource",
    "InstanceAccumulator",
    "MetricAccumulator",
    "ModelFile",
    "ModelFileError",
    "Prediction",
    "Preprocessing",
    "Segmenter",
    "StackProgress",
    "TileProgress",
    "TrainConfig",
    "TrainProgress",
    "Trainer",
    "TrainingDiverged",
    "TrainingPair",
    "UNet",
    "UNetConfig",
    "UserInputError",
    "available_devices",
    "bundled_models",
    "import_state_dict",
    "instance_targets",
    "instances_from_foreground",
    "instances_from_probabilities",
    "io",
    "iter_predict_stack",
    "labels_to_targets",
    "load_any_model",
    "load_model",
    "predict_tiled",
    "prepare_pair",
    "receptive_radius",
    "resolve_device",
    "roc_auc",
    "save_model",
    "split_for_validation",
]
