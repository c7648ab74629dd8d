"""Where and in what precision to run: device choice, autocast and the fp16 grad scaler."""

from __future__ import annotations

import contextlib
import functools
import platform
import statistics
import time
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


# bf16 must save at least a tenth of the time to be worth its rounding; near parity, fp32 (exact, and the
# same choice every time) is kept.
BF16_MIN_SPEEDUP = 1.1


@functools.cache
def cpu_bf16_speedup() -> float:
    """How many times faster a forward and backward pass runs in bf16 autocast than in fp32 on this CPU.

    bf16 instructions are needed for bf16 to pay, but not enough: on a 2-core Intel Xeon with AVX512-BF16
    and no AMX, cifarlab's ResNet18 step with SGD ran at 50 img/s in bf16 and 57 in fp32, and its 64-channel
    32x32 convolutions took twice as long in bf16 (benchmarks/cpu_precision.py). So `--precision auto` asks
    the CPU: two 3x3 convolutions shaped like ResNet18's first and third stages (64 channels at 32x32, 256
    at 8x8: as many multiply-adds each), batch 32, channels_last, the median of three passes after a
    warm-up, about half a second in all. Measured once per process, on tensors from a generator of its own,
    so the seeded global random stream is untouched.
    """
    generator = torch.Generator().manual_seed(0)
    shapes = [(64, 32), (256, 8)]
    inputs = [torch.randn(32, channels, size, size, generator=generator).to(memory_format=torch.channels_last)
              for channels, size in shapes]
    weights = [(torch.randn(channels, channels, 3, 3, generator=generator) * 0.05).requires_grad_()
               for channels, _ in shapes]

    def one_pass(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.enable_grad():
            for x, weight in zip(inputs, weights):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    y = torch.nn.functional.conv2d(x, weight, padding=1)
                y.float().square().mean().backward()
        return time.perf_counter() - start

    def median_seconds(bf16: bool) -> float:
        one_pass(bf16)  # warm-up: oneDNN picks and caches its kernels
        return statistics.median(one_pass(bf16) for _ in range(3))

    return median_seconds(bf16=False) / median_seconds(bf16=True)


def cpu_bf16_pays() -> bool:
    """Native bf16 instructions, and bf16 measured at least BF16_MIN_SPEEDUP times as fast as fp32 here."""
    return cpu_has_fast_bf16() and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


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
    if device.type == "cpu" and cpu_bf16_pays():
        return "bf16"
    return "fp32"


def bf16_measured_slow(asked: str, precision: str, device: torch.device) -> str | None:
    """Why `--precision auto` trains in fp32 on a CPU that has bf16 instructions, or None where it does not."""
    if asked != "auto" or precision != "fp32" or device.type != "cpu" or not cpu_has_fast_bf16():
        return None
    return (f"this CPU has bf16 instructions, but bf16 ran {cpu_bf16_speedup():.2f}x as fast as fp32 here "
            f"(auto takes bf16 from {BF16_MIN_SPEEDUP}x), so it trains in fp32")


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
