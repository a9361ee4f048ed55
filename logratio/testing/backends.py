"""How to reach each array library: one registry for ``logratio check``, the tests and the
benchmarks.

A :class:`Backend` is one library on one device: its namespace, its dtypes, conversion from
and to NumPy, a way to wait for its results (``synchronize``, for timing), its automatic
differentiation and compiler where it has them.  :func:`discover` lists the installed ones
(and why the others are unusable); :func:`get` builds one by name.  Frameworks are imported
only when a backend is built: ``import logratio.testing.backends`` imports none of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CAPABILITIES", "NAMES", "Backend", "BackendUnavailable", "discover", "get"]

#: Every backend this registry knows, in the order checks and tests list them.
#: ``torch-eager`` is PyTorch with its compiled engine switched off (``LOGRATIO_COMPILE=0``
#: inside :attr:`Backend.context`): the eager core, for comparison with the default.
NAMES = ("numpy", "array_api_strict", "torch", "torch-eager", "jax", "cupy")

#: What each backend can do, declared once (the test suite draws its skips from it):
#: ``"grad"``, automatic differentiation of a loss (its registered rule); ``"axis_name"``,
#: the loss of a batch sharded over a mapped axis; ``"compile"``, a compiler runs the
#: engine's block kernel (inductor, XLA).
CAPABILITIES: dict[str, frozenset[str]] = {
    "numpy": frozenset(),
    "array_api_strict": frozenset(),
    "torch": frozenset({"grad", "compile"}),
    "torch-eager": frozenset({"grad"}),
    "jax": frozenset({"grad", "axis_name", "compile"}),
    "cupy": frozenset(),
}


class BackendUnavailable(RuntimeError):
    """A backend's package is missing or it has no usable device; the message says which."""


@dataclass(frozen=True)
class Backend:
    """One array library on one device."""

    name: str
    device: str
    namespace: Any  # the library's Array API namespace (or the library itself)
    dtypes: dict[str, Any]  # dtype name -> the library's dtype, for those it has
    from_numpy: Callable[[np.ndarray, Any], Any]  # (array, native dtype or None) -> array
    to_numpy: Callable[[Any], np.ndarray]  # half types come back as float32/float64
    is_native: Callable[[Any], bool]
    synchronize: Callable[[Any], Any] = field(default=lambda x: x)  # wait for x, return it
    #: autodiff ``(scalar function of the embeddings, embeddings) -> gradient``, if any
    grad: Callable[[Callable[[Any], Any], Any], Any] | None = None
    #: a context in which float64 works (JAX: x64 enabled) and the backend's switches hold
    #: (torch-eager: the compiled engine off)
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    compile: Callable[[Callable], Callable] = field(default=lambda fun: fun)  # JAX: jax.jit
    #: ``fun`` over the first axis of ``xs`` (JAX: jax.vmap; else a loop)
    map: Callable[[Callable, Any], Any] | None = None
    cost: int = 1  # relative cost of one property example (compilation): tests run fewer

    @property
    def capabilities(self) -> frozenset[str]:
        """This backend's entry of :data:`CAPABILITIES`."""
        return CAPABILITIES[self.name]

    @property
    def label(self) -> str:
        return self.name if self.device == "cpu" else f"{self.name}-{self.device}"

    def asarray(self, x: Any, dtype: str | None = None) -> Any:
        """``x`` (NumPy or array-like) as this backend's array, in dtype ``dtype`` (a name).

        A dtype the library cannot give here (JAX float64 outside :attr:`context`, which
        JAX would silently round to float32) is an error, not a quieter dtype."""
        if dtype is None:
            return self.from_numpy(np.asarray(x), None)
        if dtype not in self.dtypes:
            raise BackendUnavailable(f"{self.name} has no {dtype}")
        out = self.from_numpy(np.asarray(x), self.dtypes[dtype])
        if out.dtype != self.dtypes[dtype]:
            hint = " (JAX float64: convert inside backend.context())" if self.name == "jax" else ""
            raise RuntimeError(f"{self.label} gave {out.dtype} for {dtype}{hint}")
        return out

    def map_over(self, fun: Callable[[Any], Any], xs: Any) -> Any:
        """``[fun(x) for x in xs]`` over the first axis (vectorised where the library can)."""
        if self.map is not None:
            return self.map(fun, xs)
        return [fun(xs[i, ...]) for i in range(xs.shape[0])]


def discover(names: tuple[str, ...] = NAMES) -> tuple[list[Backend], list[str]]:
    """The installed backends on every device found, and a note for each unusable one."""
    found: list[Backend] = []
    notes: list[str] = []
    for name in names:
        try:
            found.extend(_FACTORIES[name]())
        except BackendUnavailable as err:
            notes.append(f"{name}: {err}")
        except Exception as err:  # a broken install: report it, do not stop the caller
            notes.append(f"{name}: unusable ({type(err).__name__}: {err})")
    return found, notes


def get(name: str, device: str | None = None) -> Backend:
    """The backend ``name`` on ``device`` (default: its first device, the CPU where there is
    one); :class:`BackendUnavailable` when it cannot be had."""
    if name not in _FACTORIES:
        raise ValueError(f"backend must be one of {', '.join(NAMES)}; got {name!r}")
    backends = _FACTORIES[name]()
    for b in backends:
        if device is None or b.device == device:
            return b
    raise BackendUnavailable(f"{name} has no device {device!r}")


def _require(module: str) -> Any:
    if importlib.util.find_spec(module) is None:
        raise BackendUnavailable("not installed")
    return importlib.import_module(module)


def _numpy() -> list[Backend]:
    return [
        Backend(
            name="numpy",
            device="cpu",
            namespace=np,
            dtypes={"float64": np.float64, "float32": np.float32, "float16": np.float16},
            from_numpy=lambda x, dt: x.astype(dt) if dt is not None else x,
            to_numpy=np.asarray,
            is_native=lambda x: isinstance(x, (np.ndarray, np.generic)),
        )
    ]


def _array_api_strict() -> list[Backend]:
    xs = _require("array_api_strict")
    array_type = getattr(xs, "Array", None) or type(xs.asarray(0.0))  # 2.x: not exported
    return [
        Backend(
            name="array_api_strict",
            device="cpu",
            namespace=xs,
            dtypes={"float64": xs.float64, "float32": xs.float32},
            from_numpy=lambda x, dt: xs.asarray(x, dtype=dt),
            to_numpy=lambda x: np.from_dlpack(x) if x.ndim else np.asarray(x),
            is_native=lambda x: isinstance(x, array_type),
        )
    ]


def _torch() -> list[Backend]:
    torch = _require("torch")
    half = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    every = {"float64": torch.float64, "float32": torch.float32, **half}
    devices: list[tuple[str, dict[str, Any]]] = [("cpu", every)]
    if torch.cuda.is_available():
        devices += [(f"cuda:{i}", every) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(("mps", {"float32": torch.float32, **half}))  # MPS has no float64

    def to_numpy(x):
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()

    def grad(fn, x):
        x = x.detach().clone().requires_grad_(True)
        out = fn(x)
        if not out.requires_grad:
            raise RuntimeError("the loss returned a tensor without a gradient graph")
        return torch.autograd.grad(out, x)[0]

    def synchronize(x):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return x

    out = []
    for dev, dtypes in devices:

        def from_numpy(x, dt, dev=dev):
            # np.ascontiguousarray would make a 0-d array 1-d; asarray(order="C") keeps it
            t = torch.as_tensor(np.asarray(x, order="C"), device=dev)
            return t.to(dt) if dt is not None else t

        out.append(
            Backend(
                name="torch",
                device=dev,
                namespace=importlib.import_module("array_api_compat.torch"),
                dtypes=dtypes,
                from_numpy=from_numpy,
                to_numpy=to_numpy,
                is_native=lambda x: isinstance(x, torch.Tensor),
                synchronize=synchronize,
                grad=grad,
                cost=3,  # the engine compiles its kernel for each new formula
            )
        )
    return out


@contextlib.contextmanager
def _engine_off() -> Any:
    """``LOGRATIO_COMPILE=0`` for the duration (the PyTorch engine reads it on every call)."""
    old = os.environ.get("LOGRATIO_COMPILE")
    os.environ["LOGRATIO_COMPILE"] = "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["LOGRATIO_COMPILE"]
        else:
            os.environ["LOGRATIO_COMPILE"] = old


def _torch_eager() -> list[Backend]:
    return [
        dataclasses.replace(b, name="torch-eager", context=_engine_off, cost=1) for b in _torch()
    ]


def _jax() -> list[Backend]:
    jax = _require("jax")
    jnp = importlib.import_module("jax.numpy")
    devices = list(jax.devices("cpu"))
    for platform in ("gpu", "tpu"):
        with contextlib.suppress(RuntimeError):
            devices += list(jax.devices(platform))

    def x64() -> contextlib.AbstractContextManager:
        # float64 needs jax_enable_x64; set it only for the duration of the context
        if hasattr(jax, "enable_x64"):
            return jax.enable_x64(True)
        return importlib.import_module("jax.experimental").enable_x64()

    def to_numpy(x):
        x = np.asarray(x)
        return x.astype(np.float32) if x.dtype.name == "bfloat16" else x

    def synchronize(x):
        return jax.block_until_ready(x)

    out = []
    for device in devices:

        def from_numpy(x, dt, device=device):
            return jax.device_put(jnp.asarray(x, dtype=dt), device)

        out.append(
            Backend(
                name="jax",
                device="cpu" if device.platform == "cpu" else f"{device.platform}:{device.id}",
                namespace=jnp,
                dtypes={
                    "float64": jnp.float64,
                    "float32": jnp.float32,
                    "float16": jnp.float16,
                    "bfloat16": jnp.bfloat16,
                },
                from_numpy=from_numpy,
                to_numpy=to_numpy,
                is_native=lambda x: isinstance(x, jax.Array),
                synchronize=synchronize,
                grad=lambda fn, x: jax.grad(fn)(x),
                context=x64,
                compile=jax.jit,
                map=lambda fun, xs: jax.vmap(fun)(xs),
                cost=6,
            )
        )
    return out


def _cupy() -> list[Backend]:
    cp = _require("cupy")
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as err:  # no driver, no runtime
        raise BackendUnavailable(f"no CUDA device ({err})") from None
    if count == 0:
        raise BackendUnavailable("no CUDA device")

    def synchronize(x):
        cp.cuda.Device().synchronize()
        return x

    out = []
    for i in range(count):

        def from_numpy(x, dt, i=i):
            with cp.cuda.Device(i):
                return cp.asarray(x, dtype=dt)

        out.append(
            Backend(
                name="cupy",
                device=f"cuda:{i}",
                namespace=cp,
                dtypes={"float64": cp.float64, "float32": cp.float32, "float16": cp.float16},
                from_numpy=from_numpy,
                to_numpy=cp.asnumpy,
                is_native=lambda x: isinstance(x, cp.ndarray),
                synchronize=synchronize,
            )
        )
    return out


_FACTORIES: dict[str, Callable[[], list[Backend]]] = {
    "numpy": _numpy,
    "array_api_strict": _array_api_strict,
    "torch": _torch,
    "torch-eager": _torch_eager,
    "jax": _jax,
    "cupy": _cupy,
}
