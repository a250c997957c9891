"""Where a result was made: the machine record every benchmark and publication carries, and
the memory samplers the pipeline, the notebook runner and the benchmarks share."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from redundancy.provenance import PeakRSS, PeakSampler, children_rss, library_versions, machine


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/cpuinfo is Linux's")
def test_machine_names_the_cpu_by_vendor_family_and_model():
    m = machine()
    # "Intel(R) Xeon(R) Processor" alone does not say which Xeon: the id must
    assert re.fullmatch(r"\S+ family \d+ model \d+ stepping \d+", m["cpu_id"]), m["cpu_id"]
    assert m["cpu"] and m["cores"] >= 1 and m["memory_gib"] > 0
    assert set(m["vector"]) <= {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma"}


def test_library_versions_name_the_numerical_stack():
    v = library_versions()
    import numpy
    import torch

    assert v["numpy"] == numpy.__version__ and v["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert v["python"].count(".") == 2


def test_peak_rss_sees_an_allocation_that_is_freed_before_the_end():
    with PeakRSS() as mem:
        a = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del a
    assert mem.extra_mib >= 48  # the sampler saw it although it was gone at the end


def test_peak_sampler_keeps_the_largest_value_and_samples_at_the_end():
    values = iter([1, 5, 3] + [2] * 10_000)
    with PeakSampler(lambda: next(values), interval=10) as s:  # no sample inside: start and end only
        pass
    assert (s.base, s.peak) == (1, 5)
    with PeakSampler(lambda: 3 * 2**20) as s:
        pass
    assert s.peak_mib == 3.0


def test_kernel_memory_separates_mapped_file_pages(tmp_path):
    """The notebook runner's two memory measures (:func:`children_rss`) against the kernel's own accounting
    (/proc/PID/status): a child that allocates 96 MiB and reads a 64 MiB memory-mapped file
    has both in its resident set, only the allocation in its anonymous memory."""
    data = tmp_path / "mapped.bin"
    data.write_bytes(b"\x01" * (64 << 20))
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import numpy as np, sys, time\n"
         "a = np.ones(96 << 20, dtype=np.uint8)\n"
         f"m = np.memmap({str(data)!r}, dtype=np.uint8, mode='r')\n"
         "print(int(m.sum()), flush=True)\n"
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == str(64 << 20)  # every mapped page was read
        rss, anon = children_rss(), children_rss(anonymous=True)
        status = dict(line.split(":", 1) for line in Path(f"/proc/{child.pid}/status").read_text().splitlines())
        kib = {k: int(status[k].split()[0]) * 1024 for k in ("VmRSS", "RssAnon", "RssFile")}
    finally:
        child.kill()
        child.wait()
    assert abs(rss - kib["VmRSS"]) < 4 << 20
    assert abs(anon - kib["RssAnon"]) < 4 << 20
    assert anon >= 96 << 20 and rss - anon >= 64 << 20
