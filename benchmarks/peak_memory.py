"""Peak resident memory of a block of code, for the benchmarks (shared by all of them)."""

from __future__ import annotations

import os

from redundancy.utils import PeakSampler


def rss_bytes() -> int:
    """This process's resident set size now, in bytes (from /proc, no dependency)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    return rss_bytes() / 2**20


class PeakRSS(PeakSampler):
    """The largest resident set seen while inside, sampled every 2 ms by a thread (the
    process's own high-water mark would include loading the data), and its rise above the
    level at the start (``extra_mib``)."""

    def __init__(self, interval: float = 0.002):
        super().__init__(rss_bytes, interval)

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20
