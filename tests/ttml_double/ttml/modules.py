"""ttml.modules double: AbstractModuleBase, Parameter, RunMode and the NamedParameters map.

Mirrors tt-train/sources/ttml/nanobind/nb_modules.cpp @ cc3c6ab5dc0c14b6458f493e808473d3e583364d (ModuleBase:
get_name, parameters, train, eval, get_run_mode, create_name, register_tensor(tensor, name), register_module;
NamedParameters is an opaque nanobind map (NB_MAKE_OPAQUE + bind_map): built empty, filled with __setitem__, never
converted from a dict) and tt-train/sources/ttml/ttml/modules/module_base.py @ 04a6c330 / @ b844a98d
(AbstractModuleBase: create_name(class name) in __init__, __call__ -> forward, and __setattr__ auto-registration:
once initialised, assigning any attribute whose value has `get_value` registers it as a parameter under the
attribute's name, overriding an earlier registration of that name). Parameter names are
"<module name>/<tensor name>"; C++ modules/module_base.cpp throws on a duplicate name (register_tensor) and
deduplicates one tensor registered twice.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from .autograd import Tensor


class RunMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class NamedParameters:
    """Opaque str -> Tensor map (nanobind bind_map): no dict conversion, so ttml calls reject plain dicts."""

    def __init__(self) -> None:
        self._items: dict[str, Tensor] = {}

    def __setitem__(self, key: str, value: Tensor) -> None:
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise TypeError("NamedParameters.__setitem__(): incompatible function arguments (str, Tensor)")
        self._items[key] = value

    def __getitem__(self, key: str) -> Tensor:
        return self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def keys(self):
        return self._items.keys()

    def values(self):
        return self._items.values()

    def items(self):
        return self._items.items()


class Parameter:
    """ttml/modules/parameter.py: a plain wrapper with .tensor."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


class AbstractModuleBase:
    def __init__(self) -> None:
        # The C++ ModuleBase state, then _buffers: from here on __setattr__ auto-registers tensors.
        object.__setattr__(self, "_name", "")
        object.__setattr__(self, "_tensors", {})
        object.__setattr__(self, "_run_mode", RunMode.TRAIN)
        object.__setattr__(self, "_buffers", {})
        self.create_name(self.__class__.__name__)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if "_buffers" not in self.__dict__:
            return
        tensor = value.tensor if isinstance(value, Parameter) else value if hasattr(value, "get_value") else None
        if tensor is not None:
            try:
                self.register_tensor(tensor, name)
            except RuntimeError:
                self.override_tensor(tensor, name)

    def override_tensor(self, tensor: Tensor, name: str) -> None:
        if name not in self._tensors:
            raise RuntimeError(f"Tensor {name} is not registered")
        self._tensors[name] = tensor

    def create_name(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def get_name(self) -> str:
        return self._name

    def register_tensor(self, tensor: Tensor, name: str) -> None:
        if not isinstance(tensor, Tensor):
            raise TypeError("register_tensor(): incompatible function arguments, expected ttml.autograd.Tensor")
        if name in self._tensors:
            raise RuntimeError(f"Names of two tensors coincide: {name}")
        self._tensors[name] = tensor

    def parameters(self) -> NamedParameters:
        params, seen = NamedParameters(), set()
        for name, tensor in self._tensors.items():
            if id(tensor) not in seen:
                seen.add(id(tensor))
                params[f"{self._name}/{name}"] = tensor
        return params

    def train(self) -> None:
        object.__setattr__(self, "_run_mode", RunMode.TRAIN)

    def eval(self) -> None:
        object.__setattr__(self, "_run_mode", RunMode.EVAL)

    def get_run_mode(self) -> RunMode:
        return self._run_mode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)
