import numpy as np
import pytest
import torch
from hypothesis import settings

from fake_device import fake_accelerator

# Property tests explore the same examples on every run and every machine.
settings.register_profile("derandomized", derandomize=True, database=None)
settings.load_profile("derandomized")


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state."""
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=["cuda", "mps"])
def fake_device(request, monkeypatch):
    """Run the test as if this machine had a CUDA GPU, or an MPS device: tensors live on
    the CPU but are labelled as the device's, and what a real device would refuse or
    compute differently fails the test (see ``fake_device.py``)."""
    with fake_accelerator(request.param, monkeypatch) as mode:
        yield mode
    assert mode.problems == []
