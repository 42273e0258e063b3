"""napari integration: thin glue from layers to :mod:`napari_unet.core` and back."""
