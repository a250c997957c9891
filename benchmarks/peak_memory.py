"""Peak resident memory of a block of code, for the benchmarks (shared by all of them)."""

from __future__ import annotations

import os
import threading


def rss_mib() -> float:
    """This process's resident set size now, in MiB (from /proc, no dependency)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """The largest resident set seen while inside, sampled every 2 ms by a thread (the
    process's own high-water mark would include loading the data), and its rise above the
    level at the start (``extra_mib``)."""

    def __enter__(self):
        self.base = self.peak = rss_mib()
        self._stop = threading.Event()

        def poll():
            while not self._stop.wait(0.002):
                self.peak = max(self.peak, rss_mib())

        self._thread = threading.Thread(target=poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())

    @property
    def extra_mib(self) -> float:
        return self.peak - self.base
