"""The GUI-free engine of napari-unet: numpy, torch, scikit-image and tifffile only.

Everything the napari widgets and the command line do goes through here.
"""

from .checkpoint import ModelFile, bundled_models, import_state_dict, load_model, save_model
from .data import Augmentation, TrainingPair, labels_to_targets, prepare_pair, split_for_validation
from .devices import available_devices, resolve_device
from .errors import ModelFileError, TrainingDiverged, UserInputError
from .inference import (
    Prediction,
    Segmenter,
    StackProgress,
    instances_from_foreground,
    iter_predict_stack,
)
from .instances import InstanceAccumulator, instance_targets, instances_from_probabilities
from .metrics import MetricAccumulator, roc_auc
from .model import UNet, UNetConfig, receptive_radius
from .normalize import ImageSource, Preprocessing
from .tiling import TileProgress, predict_tiled
from .training import TrainConfig, Trainer, TrainProgress

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
    "iter_predict_stack",
    "labels_to_targets",
    "load_model",
    "predict_tiled",
    "prepare_pair",
    "receptive_radius",
    "resolve_device",
    "roc_auc",
    "save_model",
    "split_for_validation",
]
