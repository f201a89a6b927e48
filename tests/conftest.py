import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))  # makes `testplugins:Class` importable as a learner target
# The command line's --jobs defaults to auto (one run per core); tests run in-process unless they
# ask for workers with --jobs, so that monkeypatches and printed order are the driver's own.
os.environ["IMLBENCH_JOBS"] = "1"

# Small but real settings: enough entities for every subset, few epochs.
SMALL_TASK = {"n_entities": 100}


@pytest.fixture
def out(tmp_path):
    return tmp_path / "results"
