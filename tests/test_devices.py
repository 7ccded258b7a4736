import pytest
import torch

from integral_cli.devices import device_name, resolve_device, synchronize
from integral_cli.errors import ConfigError, DeviceError


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_cpu():
    assert resolve_device("cpu") == torch.device("cpu")
    assert device_name(torch.device("cpu")) == "cpu"
    assert synchronize(torch.device("cpu")) is None  # nothing to wait for


def test_timed_synchronises_around_the_clock(monkeypatch):
    from integral_cli import devices

    events = []
    monkeypatch.setattr(devices, "synchronize", lambda device: events.append(("sync", device.type)))
    clock = iter([10.0, 12.5])
    monkeypatch.setattr(devices.time, "perf_counter", lambda: events.append(("clock",)) or next(clock))
    result, seconds = devices.timed(lambda: events.append(("work",)) or 42, torch.device("cuda"))
    assert (result, seconds) == (42, 2.5)
    # the queued work is waited for before the first clock read and before the second
    assert events == [("sync", "cuda"), ("clock",), ("work",), ("sync", "cuda"), ("clock",)]


def test_auto_without_cuda_is_cpu(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_with_cuda_is_cuda(two_gpus):
    assert resolve_device("auto") == torch.device("cuda", 0)


@pytest.mark.parametrize("spec, index", [("cuda", 0), ("cuda:1", 1), ("CUDA:0", 0)])
def test_cuda_when_available(two_gpus, spec, index):
    assert resolve_device(spec) == torch.device("cuda", index)


def test_cuda_index_out_of_range(two_gpus):
    with pytest.raises(DeviceError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_unavailable(no_cuda, spec):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device(spec)


def test_mps_unavailable(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="mps"):
        resolve_device("mps")


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:-1", "tpu", ""])
def test_unknown_spec(spec):
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device(spec)
