"""run.allocator: freed large arrays stay in the process, so the next image's reuse them."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# In a fresh process: allocate, touch and free a 64 MiB array, then count the minor page
# faults of doing it again (glibc's default hands the block back to the system in between).
PROBE = """
import resource, sys, numpy as np
from lightmycells.run import allocator
if sys.argv[1] == "keep":
    assert allocator.keep_large_blocks()
def touch():
    a = np.ones(16 * 2**20, np.float32); del a
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode):
    done = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_array_is_reused_without_page_faults():
    default, kept = _faults("default"), _faults("keep")
    # 64 MiB of fresh pages: 544 faults here (several pages per fault), 32 at least with
    # 2 MiB transparent huge pages; kept: 0 here
    assert default >= 16
    assert kept < default / 10
