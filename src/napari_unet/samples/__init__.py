"""Sample images shipped with the package (CC0 DSB2018 nuclei; skimage's retina fundus).

``nuclei.png`` and ``nuclei_labels.png`` are image 9620c33d... of the 2018 Data Science Bowl
stage 1 training set (fluorescence, 520 x 696, 168 nuclei, community-fixed masks), released
under CC0. It belongs to the validation split used to pick the bundled nuclei model's best
epoch, so the demo's score is not an independent test figure.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
SAMPLES = {
    "nuclei": "nuclei.png",
    "nuclei_labels": "nuclei_labels.png",
}


def sample_path(name: str) -> Path:
    """Path of a bundled sample file by name (see ``SAMPLES``)."""
    try:
        return _HERE / SAMPLES[name]
    except KeyError:
        raise KeyError(f"no sample called {name!r}; available: {', '.join(SAMPLES)}") from None
