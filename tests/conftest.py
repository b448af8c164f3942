"""Fixtures shared by the test modules."""

import pytest
import torch


@pytest.fixture
def single_thread():
    """Tiny matrices run several times faster on one thread than on contended cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
