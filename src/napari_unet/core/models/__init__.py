"""The self-describing model file (plain data, loaded without unpickling code) and the bundled
models. bioimage.io packages are opened one level up, in interop.open_model."""

from .model_file import (
    ModelFile,
    bundled_models,
    import_state_dict,
    load_model_file,
    resolve_model_path,
    save_model,
)

__all__ = [
    "ModelFile",
    "bundled_models",
    "import_state_dict",
    "load_model_file",
    "resolve_model_path",
    "save_model",
]
