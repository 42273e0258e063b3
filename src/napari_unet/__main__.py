"""``python -m napari_unet`` is the ``napari-unet`` command (what ``torchrun -m napari_unet``
launches on every rank)."""

import sys

from .cli import main

sys.exit(main())
