"""Where and how a result was made: the machine, the library versions, and peak memory.

One home for what the pipeline, the notebook runner, publishing and the benchmarks record
beside their numbers (speed ratios mean little without the CPU that gave them: Intel Xeon and
AMD EPYC machines both run this project, and their ratios differ).
"""

from __future__ import annotations

import os
import platform
import threading
from pathlib import Path

__all__ = ["machine", "library_versions", "PeakSampler", "PeakRSS", "rss_bytes", "own_anonymous", "children_rss"]


def _cpuinfo() -> dict:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    out = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def machine() -> dict:
    """This machine, in the words a reader needs to compare timings: the CPU's name, and its
    vendor, family, model and stepping (a name like "Intel(R) Xeon(R) Processor" says little),
    the vector extensions the compiled kernels can use, cores, memory, GPU and OS."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - no torch, or a broken CUDA: no GPU to report
        pass
    cpu_id = None
    if info.get("vendor_id"):
        cpu_id = (f"{info['vendor_id']} family {info.get('cpu family', '?')} model {info.get('model', '?')} "
                  f"stepping {info.get('stepping', '?')}")
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(), "cpu_id": cpu_id,
            "vector": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma")),
            "cores": os.cpu_count(), "memory_gib": mem, "gpu": gpu, "os": platform.platform()}


def library_versions() -> dict:
    """Python's and the numerical libraries' versions."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("redundancy", "numpy", "torch", "transformers", "tokenizers", "scikit-learn", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


# ---- memory ------------------------------------------------------------------------------------

def rss_bytes() -> int:
    """This process's resident set size now, in bytes (from /proc, no dependency)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def own_anonymous() -> int:
    """This process's resident memory without its file-backed pages (RssAnon), in bytes."""
    import psutil

    info = psutil.Process().memory_info()
    return info.rss - getattr(info, "shared", 0)


def children_rss(anonymous: bool = False) -> int:
    """Summed resident memory of this process's descendants (a notebook's kernel), in bytes.

    ``anonymous=True`` leaves out file-backed pages (resident minus shared, Linux's RssAnon):
    the pages of memory-mapped activation files that a kernel has read count in its resident
    set, but the system can drop them at any time, so they are not memory the step needs."""
    import psutil

    total = 0
    for c in psutil.Process().children(recursive=True):
        try:
            info = c.memory_info()
            total += info.rss - (getattr(info, "shared", 0) if anonymous else 0)
        except psutil.Error:  # it ended meanwhile
            pass
    return total


class PeakSampler:
    """The largest value of ``measure()`` (bytes) seen while inside, sampled by a thread every
    ``interval`` seconds and once more at the end; ``peak_mib`` gives it in MiB."""

    def __init__(self, measure, interval: float = 0.5):
        self.measure, self.interval = measure, interval

    def __enter__(self):
        self.base = self.peak = self.measure()
        self._stop = threading.Event()

        def poll():
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, self.measure())

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.measure())

    @property
    def peak_mib(self) -> float:
        return round(self.peak / 2**20, 1)


class PeakRSS(PeakSampler):
    """This process's largest resident set while inside, sampled every 2 ms by a thread (the
    process's own high-water mark would include loading the data), and its rise above the
    level at the start (``extra_mib``): the benchmarks' memory measure."""

    def __init__(self, interval: float = 0.002):
        super().__init__(rss_bytes, interval)

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20
