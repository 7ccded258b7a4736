"""A fake accelerator: the real code runs on the CPU while the tensors that would live on
a CUDA or MPS device are labelled as living there, and whatever a real device would
refuse, or compute differently, fails the test.

How: a :class:`torch.overrides.TorchFunctionMode` sees every torch call. A call asked to
put its result on the fake device (``device=``, ``.to(...)``, ``.cuda()``) runs on the CPU
and its result is labelled; a result computed from labelled tensors is labelled too; a
labelled tensor answers ``.device`` with the fake device. With :func:`fake_accelerator`
telling ``torch.cuda`` (or ``torch.backends.mps``) that the device exists, the library
resolves ``cuda`` or ``mps`` and takes its device paths for real.

Flagged, each as a :class:`DeviceMisuse` raised at the call and kept in
``FakeDevice.problems`` (in case the code under test swallows it):

* mixing: a labelled tensor meets an unlabelled CPU tensor of one or more dimensions in
  one call (0-dim CPU tensors are allowed, as CUDA allows them);
* ``.numpy()`` of a labelled tensor;
* float64 on MPS: a labelled float64 tensor is made;
* a random draw on the device: ``torch.rand`` and the like with ``device=`` the fake
  device, with a generator made for it, or filling a labelled tensor;
* TensorFloat-32 on CUDA: a float32 convolution or matrix product while cuDNN's or the
  matrix products' float32 precision allows TF32.

Not modelled: memory, speed, asynchrony, the device's own kernels (results equal the
CPU's), and the autograd engine's own operations (gradients are labelled when read
through ``.grad`` or ``torch.autograd.grad``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

#: Calls that draw random numbers.
RANDOM = frozenset(
    {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like", "normal", "bernoulli"}
    | {"multinomial", "poisson", "uniform_", "normal_", "random_", "exponential_", "geometric_", "cauchy_"}
    | {"log_normal_", "bernoulli_"}
)
CONVOLUTIONS = frozenset({"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "convolution"})
PRODUCTS = frozenset({"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "addmm", "baddbmm", "einsum", "linear"})
#: Calls that legitimately take tensors from both sides: the moves between them.
MOVES = frozenset({"to", "cpu", "cuda", "copy_"})


class DeviceMisuse(AssertionError):
    """Something a real device would refuse, or compute differently from the CPU."""


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _first_set(*precisions: str) -> str:
    """The float32 precision in force: the first of op, backend, global that is set."""
    return next((p for p in precisions if p != "none"), "ieee")


def tf32_convolutions() -> bool:
    """Whether cuDNN may run float32 convolutions in TF32 (as on Ampere GPUs by default)."""
    cudnn: Any = torch.backends.cudnn
    if hasattr(cudnn, "conv"):
        return _first_set(cudnn.conv.fp32_precision, cudnn.fp32_precision, torch.backends.fp32_precision) == "tf32"
    return bool(cudnn.allow_tf32)


def tf32_products() -> bool:
    """Whether float32 matrix products may run in TF32."""
    matmul: Any = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        return _first_set(matmul.fp32_precision, torch.backends.fp32_precision) == "tf32"
    return torch.get_float32_matmul_precision() != "highest"


class FakeDevice(TorchFunctionMode):
    """Labels tensors as living on a fake ``cuda:0`` or ``mps`` device (see the module)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.device = torch.device("cuda", 0) if kind == "cuda" else torch.device("mps")
        self.problems: list[str] = []
        self._labelled: dict[int, weakref.ref[torch.Tensor]] = {}

    # ------------------------------------------------------------------ labels
    def on_device(self, tensor: torch.Tensor) -> bool:
        """Whether ``tensor`` is labelled as living on the fake device."""
        ref = self._labelled.get(id(tensor))
        return ref is not None and ref() is tensor

    def _label(self, tensor: torch.Tensor) -> None:
        key = id(tensor)
        self._labelled[key] = weakref.ref(tensor, lambda _, key=key: self._labelled.pop(key, None))
        if self.kind == "mps" and tensor.dtype == torch.float64:
            self._fail(f"a float64 tensor {tuple(tensor.shape)} on MPS, which has no float64")

    def _fail(self, problem: str) -> None:
        self.problems.append(problem)
        raise DeviceMisuse(problem)

    def _where(self, device: Any) -> str | None:
        """``"device"``, ``"cpu"``, or ``None`` for a value that names no device."""
        if isinstance(device, str) and device.split(":")[0] in ("cpu", "cuda", "mps"):
            device = torch.device(device)
        if not isinstance(device, torch.device):
            return None
        if device.type == self.kind:
            return "device"
        if device.type != "cpu":
            self._fail(f"a {device.type} tensor in a run on {self.kind}")
        return "cpu"

    # ---------------------------------------------------------------- the mode
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name == "__get__":
            return self._attribute(func, args)
        if name == "get_device" and self.on_device(args[0]):
            return 0
        args, target = list(args), None
        if "device" in kwargs:
            target = self._where(kwargs["device"])
            if target == "device":
                kwargs["device"] = "cpu"
        if name in ("to", "cuda", "cpu"):
            args, kwargs, target = self._move(name, args, kwargs, target)
            func = torch.Tensor.to
        inputs = list(_tensors((args, kwargs)))
        from_device = [t for t in inputs if self.on_device(t)]
        generator = kwargs.get("generator")
        if name in RANDOM and (target == "device" or from_device or getattr(generator, "on_device", False)):
            self._fail(f"{name}: a random draw on the device; the same seed gives other numbers on other devices")
        if name in ("numpy", "__array__") and from_device:
            self._fail(f"{name}() of a tensor on {self.kind}: move it to the CPU first")
        if from_device and name not in MOVES:
            plain = [tuple(t.shape) for t in inputs if t.dim() > 0 and not self.on_device(t)]
            if plain:
                self._fail(f"{name}: tensors on {self.kind} and CPU tensors {plain} in one call")
        if self.kind == "cuda" and any(t.dtype == torch.float32 for t in from_device):
            if name in CONVOLUTIONS and tf32_convolutions():
                self._fail(f"{name}: a float32 convolution on CUDA that cuDNN may run in TensorFloat-32")
            if name in PRODUCTS and tf32_products():
                self._fail(f"{name}: a float32 matrix product on CUDA that may run in TensorFloat-32")
        result = func(*args, **kwargs)
        if target == "device" or (target is None and from_device):
            for tensor in _tensors(result):
                self._label(tensor)
        return result

    def _attribute(self, getter: Any, args: Any) -> Any:
        """A tensor property: ``.device`` and its kin answer for labelled tensors."""
        tensor, prop = args[0], getattr(getter.__self__, "__name__", "")
        value = getter(*args)
        if not self.on_device(tensor):
            return value
        answers = {"device": self.device, "is_cuda": self.kind == "cuda", "is_mps": self.kind == "mps", "is_cpu": False}
        if prop in answers:
            return answers[prop]
        if isinstance(value, torch.Tensor):  # .grad, .data, .mT, ...
            self._label(value)
        return value

    def _move(self, name: str, args: list[Any], kwargs: dict[str, Any], target: str | None) -> tuple:
        """``.to(...)``, ``.cuda()``, ``.cpu()`` as a ``.to`` on the CPU and where it goes."""
        source = args[0]
        if name == "cuda":
            args, target = [source], self._where(torch.device("cuda"))
        elif name == "cpu":
            args, target = [source], "cpu"
        for index, value in enumerate(args[1:], start=1):
            if isinstance(value, torch.Tensor):  # .to(other): other's device and dtype
                target = "device" if self.on_device(value) else "cpu"
                args[index] = value.dtype
            elif (where := self._where(value)) is not None:
                target, args[index] = where, "cpu"
        if target is not None and (target == "device") != self.on_device(source):
            kwargs["copy"] = True  # a move makes a new tensor; the source stays where it was
        return args, kwargs, target


def generator_for(mode: FakeDevice) -> type:
    """A ``torch.Generator`` that accepts the fake device (and draws on the CPU)."""

    class Generator(torch.Generator):
        on_device: bool

        def __new__(cls, device: Any = "cpu") -> Generator:
            generator = super().__new__(cls, "cpu")
            generator.on_device = torch.device(device).type == mode.kind
            return generator

        def __init__(self, device: Any = "cpu") -> None:
            pass

        @property
        def device(self) -> torch.device:
            return mode.device if self.on_device else torch.device("cpu")

    return Generator


@contextlib.contextmanager
def fake_accelerator(kind: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDevice]:
    """Make torch report a ``kind`` device (``cuda`` or ``mps``) and run under the mode."""
    mode = FakeDevice(kind)
    if kind == "cuda":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    else:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        monkeypatch.setattr(torch.mps, "synchronize", lambda: None)
        monkeypatch.setattr(torch.mps, "empty_cache", lambda: None)
    monkeypatch.setattr(torch, "Generator", generator_for(mode))
    with mode:
        yield mode
