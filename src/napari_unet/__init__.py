"""napari-unet: U-Net segmentation for microscopy and retina images, in napari and a CLI.

The engine lives in :mod:`napari_unet.core` (no GUI imports); the napari widgets in
:mod:`napari_unet._napari` and the command line in :mod:`napari_unet.cli` both drive it.
"""

__version__ = "0.1.0"
