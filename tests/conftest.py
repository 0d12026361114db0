"""Shared test fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test that pins torch's intra-op threads must not change the thread count (and with it the
    last bits of every CPU reduction) for the tests that run after it in the same process."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
