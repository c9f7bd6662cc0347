"""torch.compile state reset around a test, so graph counts start from zero."""

from __future__ import annotations

import pytest
import torch._dynamo
from torch._dynamo.utils import counters


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()
