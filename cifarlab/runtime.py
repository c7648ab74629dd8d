"""Where and in what precision to run: device choice, autocast and the fp16 grad scaler."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; an explicit device must be present."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda was asked for but no CUDA device is available (allowed: auto, cpu"
                                    + (", mps" if torch.backends.mps.is_available() else "") + ")")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", "mps was asked for but is not available on this machine")
    return torch.device(name)


def _cpuinfo() -> str:
    """/proc/cpuinfo, or '' where there is none (macOS, Windows)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where oneDNN runs bf16 convolutions natively."""
    flags = _cpuinfo()
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (platform.processor() is empty on most Linux builds)."""
    return next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                 if line.startswith("model name")), platform.processor())


def hardware() -> dict:
    """What speed depends on, for the record of a run or a benchmark: the CPU, the vector instructions
    PyTorch uses on it, whether bf16 is native there, and the GPU if there is one."""
    return {"processor": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "fast_bf16": cpu_has_fast_bf16(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def cuda_has_native_bf16() -> bool:
    """True on CUDA devices that compute in bf16 (compute capability 8.0, Ampere, or newer) and on ROCm.
    torch.cuda.is_bf16_supported() alone also says True on a T4 (Colab's free GPU) or a V100, where bf16 is
    only emulated: slow, and cuDNN has no bf16 convolutions there, so those train in fp16."""
    return torch.cuda.is_bf16_supported(including_emulation=False)  # False where there is no CUDA device


def cuda_capability() -> str:
    """The current CUDA device's compute capability, as "7.5"."""
    return ".".join(map(str, torch.cuda.get_device_capability()))


def resolve_precision(name: str, device: torch.device) -> str:
    if name != "auto":
        if name == "bf16" and device.type == "cuda" and not cuda_has_native_bf16():
            raise ConfigError("precision", "bf16 needs a CUDA device of compute capability 8.0 or newer, "
                                           f"this one is {cuda_capability()} (allowed: fp16, fp32)")
        if name == "fp16" and device.type == "cpu":
            raise ConfigError("precision", "fp16 training is for CUDA/MPS devices; on the CPU use bf16 or fp32")
        return name
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def bf16_is_emulated(precision: str, device: torch.device) -> bool:
    """bf16 on a CPU without bf16 instructions: oneDNN emulates its convolutions, right but slow (a ResNet18
    training step ran 16 times slower than in fp32 on an AVX2-only AMD EPYC: 2.4 against 39 img/s)."""
    return precision == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16()


EMULATED_BF16 = "this CPU has no AVX512-BF16 or AMX, so bf16 is emulated and many times slower than fp32"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    """Mixed-precision context for the forward pass (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def make_grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A scaler that is active only for fp16, where small gradients would underflow."""
    return torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))


def configure_backend(device: torch.device) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
