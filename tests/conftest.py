import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # makes `testplugins:Class` importable as a learner target
# The command line's --jobs defaults to auto (one run per core); tests run one at a time (the same
# path: a worker per run, kept between grids) unless they ask for more, so that printed order is fixed.
os.environ["IMLBENCH_JOBS"] = "1"

# Small but real settings: enough entities for every subset, few epochs.
SMALL_TASK = {"n_entities": 100}


@pytest.fixture
def drop(tmp_path):
    """A folder a test learner may write notes to: its sandbox lets it write in /dev/shm, not in
    the test's tmp_path (where records lie)."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    folder = Path(tempfile.mkdtemp(prefix="imlbench-test-", dir=base))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def out(tmp_path):
    return tmp_path / "results"
