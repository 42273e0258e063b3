"""Which compute devices exist, and what "auto" means."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

from ..errors import UserInputError

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
PRECISION_ENV = "NAPARI_UNET_PRECISION"


def available_devices() -> list[str]:
    """Devices usable here, best first: each CUDA GPU, then Apple MPS, then the CPU."""
    devices = (
        [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    devices.append("cpu")
    return devices


def describe_device(device: torch.device) -> str:
    """A human-readable name, e.g. ``cuda:0 (NVIDIA H100)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda", "cuda:1" or "mps" into a device that exists, or raise."""
    if isinstance(name, torch.device):
        name = str(name)
    name = name.strip().lower()
    available = available_devices()
    if name == "auto":
        return torch.device(available[0])
    if name == "cuda":
        name = "cuda:0"
    if name not in available:
        raise UserInputError(
            f"device {name!r} is not available here; available: {', '.join(available)}"
        )
    return torch.device(name)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The reduced precision to run a forward pass in, or None for float32.

    "auto" picks bfloat16 on GPUs that support it, float16 on older CUDA GPUs, bfloat16 on CPUs
    with AMX matrix units (3-5x faster there, measured), and float32 on other CPUs and MPS,
    where reduced precision is slower or less reliable for convolutions. The environment
    variable ``NAPARI_UNET_PRECISION`` (float32, bfloat16 or float16) overrides what "auto"
    means, so one machine can exercise the path another machine would take by default.
    """
    if precision not in PRECISIONS:
        raise UserInputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = auto_precision_override() or "auto"
    if precision == "float32":
        return None
    if precision == "auto":
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_fast_bfloat16() else None
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bfloat16" else torch.float16


def auto_precision_override() -> str | None:
    """The precision ``NAPARI_UNET_PRECISION`` gives "auto", or None when it is unset."""
    value = os.environ.get(PRECISION_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    allowed = PRECISIONS[1:]
    if value not in allowed:
        raise UserInputError(
            f"environment variable {PRECISION_ENV}={value!r} is not a precision; "
            f"use one of {', '.join(allowed)}, or unset it"
        )
    return value


def cpu_has_fast_bfloat16() -> bool:
    """Whether this CPU has AMX tiles, which run bfloat16 convolutions natively.

    Without them (older x86, ARM) bfloat16 is emulated and slower than float32.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a private probe: treat any failure as "no"
        return False


def slow_precision_note(device: torch.device, precision: str = "auto") -> str | None:
    """A warning when the chosen precision is emulated here, or None.

    bfloat16 and float16 forced on a CPU without AMX (through ``precision`` or
    ``NAPARI_UNET_PRECISION``) run about 10 times slower than float32 (measured on a 2-core AMD
    EPYC: a base-16 training step 5.3 s against 0.49 s); "auto" never picks them there.
    """
    dtype = autocast_dtype(device, precision)
    if dtype is None or device.type != "cpu" or cpu_has_fast_bfloat16():
        return None
    name = str(dtype).removeprefix("torch.")
    return (
        f"warning: {name} is emulated on this CPU (no AMX) and about 10 times slower than "
        f"float32; unset {PRECISION_ENV} (or set it to float32) unless you mean to test it"
    )


def memory_format(device: torch.device, spatial_dims: int) -> torch.memory_format:
    """The tensor layout convolutions run fastest in: channels-last for 2D on CPU and CUDA.

    Measured on a 2-core Xeon (torch 2.13): a base-16 U-Net trains 25% faster in float32 and
    40% faster in bfloat16 with channels-last; MPS support is patchy, so it keeps the default.
    """
    if spatial_dims == 2 and device.type in ("cpu", "cuda"):
        return torch.channels_last
    return torch.contiguous_format


def autocast(device: torch.device, precision: str = "auto") -> AbstractContextManager:
    """Context manager running the enclosed forward passes in the chosen precision."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def warm_up() -> None:
    """Load torch's lazily imported parts and initialise its CPU kernels once.

    The first optimiser torch creates imports ``torch._dynamo`` (over a second on a laptop,
    holding the GIL for stretches of 100 ms and more), and the first convolution initialises
    its kernels. Doing this early, in a background thread, keeps both out of the first training
    step, where they would stall a GUI waiting for the GIL.
    """
    net = torch.nn.Conv2d(1, 2, 3)
    optimizer = torch.optim.AdamW(net.parameters())
    net(torch.zeros(1, 1, 8, 8)).sum().backward()
    optimizer.step()


_MALLOPT = {"M_TRIM_THRESHOLD": -1, "M_MMAP_THRESHOLD": -3, "M_MMAP_MAX": -4}
_GLIBC_MMAP_MAX = 65536  # glibc's default for M_MMAP_MAX
_libc: Any = None
_libc_checked = False


def _tuned_libc() -> Any:
    """glibc, set up once to keep freed heap memory, or None (other systems, or opted out)."""
    global _libc, _libc_checked
    if not _libc_checked:
        _libc_checked = True
        if os.environ.get("NAPARI_UNET_MALLOC_REUSE", "1") == "0":
            return None
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            # Never give the heap's free top back (the next pass needs it again). Setting
            # the trim threshold freezes glibc's adaptive map threshold; pin it at its
            # initial 128 kB, so large arrays made outside a forward pass stay memory maps,
            # returned when freed, and do not fragment the heap.
            if libc.mallopt(_MALLOPT["M_TRIM_THRESHOLD"], 2**31 - 1) and libc.mallopt(
                _MALLOPT["M_MMAP_THRESHOLD"], 128 * 2**10
            ):
                _libc = libc
        except (OSError, AttributeError):
            pass  # not glibc (macOS, Windows, musl): nothing to tune
    return _libc


@contextmanager
def reuse_cpu_memory() -> Iterator[None]:
    """Within this block, glibc serves even large allocations from its heap, where the
    memory freed by one forward pass is reused by the next.

    By default each CPU activation of tens of MB is a fresh memory map, page-faulted on every
    pass and unmapped after: half the time of a 1536 x 1536 window went to the kernel here
    (2.9 MP/s against 5.8 MP/s with reuse; nuclei model, 2 cores). Only the forward pass runs
    inside the block, so the heap stays the size of one pass (kept until the process exits,
    as jemalloc or tcmalloc would) while large arrays made elsewhere (labels, bands) are still
    mapped and returned when freed. Not on other C libraries or systems; GPU memory is not
    concerned. ``NAPARI_UNET_MALLOC_REUSE=0`` opts out.
    """
    libc = _tuned_libc()
    if libc is None:
        yield
        return
    libc.mallopt(_MALLOPT["M_MMAP_MAX"], 0)
    try:
        yield
    finally:
        libc.mallopt(_MALLOPT["M_MMAP_MAX"], _GLIBC_MMAP_MAX)


def release_cpu_memory() -> None:
    """Give the heap memory kept by :func:`reuse_cpu_memory` back to the system; call it when
    a prediction is over, so an idle napari session does not hold its last forward pass."""
    libc = _tuned_libc()
    if libc is not None:
        libc.malloc_trim(0)
