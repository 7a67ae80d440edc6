import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
sys.path.insert(0, ROOT)


@pytest.fixture(scope="session")
def golden():
    return np.load(os.path.join(FIXTURES, "reference_outputs.npz"))
