"""Every ttml/ttnn symbol the plugin calls, with the parameter names it relies on: the one list that
`tt-check` verifies against the installed libraries and that the test double's coverage test walks.

The list is derived from lightning_tt.bindings.BINDINGS, the table of the real bindings' Python-visible signatures
read from the tt-metal sources (file and commit per row): for each symbol, the leading parameter names of its
binding that the plugin passes ("/" where nanobind makes them positional-only). `None` means the plugin only needs
the name to exist (a class, an enum member). Torch-free.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any

from lightning_tt.bindings import BINDINGS


@dataclass(frozen=True)
class Symbol:
    path: str
    """Dotted path from the top module, e.g. "ttml.ops.loss.cross_entropy_loss"."""
    parameters: tuple[str, ...] | None = None
    """Leading parameter names (self excluded, "/" closing positional-only ones) one overload must start with;
    None: existence only."""


PLUGIN_SYMBOLS: tuple[Symbol, ...] = tuple(Symbol(row.path, row.expected or None) for row in BINDINGS)
"""What tt-check expects: the bindings table's names, as many as the plugin passes."""


@dataclass(frozen=True)
class SymbolCheck:
    symbol: Symbol
    found: bool
    signature_ok: bool | None
    """None: nothing to compare (existence only, or the binding exposes no signature text)."""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.found and self.signature_ok is not False


def resolve(path: str) -> Any:
    """The object at a dotted path, importing modules along the way; raises LookupError when absent."""
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:  # a submodule not yet attached to its package
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            raise LookupError(f"{'.'.join(parts[:i])} has no attribute {part}") from None
    return obj


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parameter_lists(obj: Any, name: str) -> list[list[str]]:
    """Parameter names of each overload of a callable (self excluded), from Python's signature or from the
    signature text nanobind puts in __nb_signature__ / __doc__ ("name(a: T, b: T = ...) -> R")."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = [p for p in inspect.signature(target).parameters.values() if p.name != "self"]
        names = []
        for i, param in enumerate(params):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            names.append(param.name)
            following = params[i + 1].kind if i + 1 < len(params) else None
            if param.kind == param.POSITIONAL_ONLY and following != param.POSITIONAL_ONLY:
                names.append("/")  # as nanobind writes it: ", /" after the last positional-only parameter
        return [names]
    except (TypeError, ValueError):
        pass
    texts = [entry[0] for entry in getattr(target, "__nb_signature__", ()) if entry]
    texts += (getattr(target, "__doc__", None) or getattr(obj, "__doc__", None) or "").splitlines()
    overloads = []
    for text in texts:
        match = re.search(rf"(?:def\s+)?(?:{re.escape(name)}|__init__)\((.*)\)", text)
        if not match:
            continue
        names = [re.split(r"[:=]", part, maxsplit=1)[0].strip().lstrip("*") for part in _split_top_level(match[1])]
        names = [n for n in names if n and n != "self"]
        if names not in overloads:  # __nb_signature__ and __doc__ repeat each overload
            overloads.append(names)
    return overloads


def check_symbol(symbol: Symbol) -> SymbolCheck:
    try:
        obj = resolve(symbol.path)
    except Exception as err:  # noqa: BLE001 - a broken native module raises more than ImportError
        return SymbolCheck(symbol, False, None, str(err).splitlines()[0] if str(err) else type(err).__name__)
    if symbol.parameters is None:
        return SymbolCheck(symbol, True, None)
    overloads = parameter_lists(obj, symbol.path.rsplit(".", 1)[-1])
    if not overloads:
        return SymbolCheck(symbol, True, None, "no signature exposed")
    wanted = list(symbol.parameters)
    if any(names[: len(wanted)] == wanted for names in overloads):
        return SymbolCheck(symbol, True, True)
    shown = " | ".join("(" + ", ".join(names) + ")" for names in overloads)
    return SymbolCheck(symbol, True, False, f"expected ({', '.join(wanted)}, ...), found {shown}")


def check_all(symbols: tuple[Symbol, ...] = PLUGIN_SYMBOLS) -> list[SymbolCheck]:
    return [check_symbol(symbol) for symbol in symbols]


def format_table(checks: list[SymbolCheck]) -> str:
    """A plain-text table: symbol, found, signature ok (and what differs)."""
    rows = [("symbol", "found", "signature ok", "")]
    for check in checks:
        signature = "-" if check.signature_ok is None else ("yes" if check.signature_ok else "NO")
        rows.append((check.symbol.path, "yes" if check.found else "NO", signature, check.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d}".rstrip() for a, b, c, d in rows]
    lines.insert(1, "-" * (sum(widths) + 4))
    return "\n".join(lines)
