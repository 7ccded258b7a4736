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


# ------------------------------------------------------------------ full float32
def test_full_float32_pins_tf32_off_on_cuda_and_restores_the_callers_settings():
    from integral_cli.devices import full_float32

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if not hasattr(cudnn, "conv"):
        pytest.skip("torch before 2.9 has no per-operation float32 precision")
    saved = cudnn.conv.fp32_precision, matmul.fp32_precision
    try:
        cudnn.conv.fp32_precision, matmul.fp32_precision = "tf32", "tf32"  # what Ampere users run with
        with full_float32(torch.device("cuda", 0)):
            assert (cudnn.conv.fp32_precision, matmul.fp32_precision) == ("ieee", "ieee")
        assert (cudnn.conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        with full_float32(torch.device("cpu")):  # nothing to pin elsewhere
            assert (cudnn.conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
        with pytest.raises(ValueError), full_float32(torch.device("cuda", 0)):
            raise ValueError
        assert (cudnn.conv.fp32_precision, matmul.fp32_precision) == ("tf32", "tf32")
    finally:
        cudnn.conv.fp32_precision, matmul.fp32_precision = saved


# ------------------------------------------------------------------ out of memory
def test_run_on_device_turns_out_of_memory_into_one_error_and_frees_after_the_except(monkeypatch):
    import sys

    from integral_cli import devices
    from integral_cli.errors import OutOfMemoryError

    released = []
    # the failed work's tensors are referenced from the traceback until the except block ends
    monkeypatch.setattr(devices, "release_cached_memory", lambda device: released.append(sys.exc_info()[0]))

    def work():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has ...")

    with pytest.raises(OutOfMemoryError) as caught:
        devices.run_on_device(torch.device("cuda", 0), work, "lower «samples»")
    assert str(caught.value) == "cuda:0 ran out of memory (CUDA out of memory); lower samples"
    assert caught.value.__context__ is None  # no traceback of the failed work kept alive
    assert released == [None]


def test_run_on_device_lets_other_errors_and_its_own_through():
    from integral_cli.devices import run_on_device
    from integral_cli.errors import OutOfMemoryError

    def broken():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_on_device(torch.device("cpu"), broken, "")

    def ours():
        raise OutOfMemoryError("even for one map")

    with pytest.raises(OutOfMemoryError, match="^even for one map$"):
        run_on_device(torch.device("cpu"), ours, "")


@pytest.mark.parametrize(
    "error, reason",
    [
        (MemoryError(), "MemoryError"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes."), None),
        (RuntimeError("MPS backend out of memory (MPS allocated: 1 GB). Tried ..."), None),
    ],
)
def test_out_of_memory_reason_is_the_first_sentence(error, reason):
    from integral_cli.devices import is_out_of_memory, out_of_memory_reason

    assert is_out_of_memory(error)
    expected = reason or str(error).split(". ")[0].rstrip(".")
    assert out_of_memory_reason(error) == expected


# ------------------------------------------------------------------ device models
def test_device_model_leaves_out_the_index(two_gpus, monkeypatch):
    from integral_cli.devices import device_model, model_of_device_name

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    assert device_model(torch.device("cuda", 1)) == "cuda (NVIDIA A100)"
    assert device_model(torch.device("cpu")) == "cpu"
    assert device_model(torch.device("mps")) == "mps"
    assert model_of_device_name("cuda:1 (NVIDIA A100)") == "cuda (NVIDIA A100)"
    assert model_of_device_name("cpu") == "cpu"


def test_float64_is_refused_on_mps_only():
    from integral_cli.devices import check_dtype

    check_dtype(torch.device("cpu"), "float64")
    check_dtype(torch.device("mps"), "float32")
    with pytest.raises(DeviceError, match="MPS has no float64"):
        check_dtype(torch.device("mps"), "float64")
