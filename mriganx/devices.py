"""Where the networks run and in which precision: the one place that knows about CUDA, MPS and autocast.

>>> pick_device("cpu").type
'cpu'
>>> autocast_dtype(Precision.FP32, torch.device("cpu")) is None
True
"""

from __future__ import annotations

import torch

from mriganx.config import Precision
from mriganx.errors import MriganxError


def pick_device(name: str) -> torch.device:
    """``auto`` takes CUDA, then Apple's MPS, then the CPU; a named device that is not there is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MriganxError(None, "--device cuda: no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MriganxError(None, f"--device {name}: not a device; use auto, cpu, cuda or mps") from None


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device; ``None`` means plain fp32.

    ``auto`` is fp32 off CUDA: on the CPUs we measured, bf16 made steps faster but learnt less per step
    (docs/performance.md).
    """
    if precision is Precision.FP32 or (precision is Precision.AUTO and device.type != "cuda"):
        return None
    if precision is Precision.FP16 or (precision is Precision.AUTO and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16
