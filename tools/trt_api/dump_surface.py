"""Write the Python API surface of the importable ``tensorrt`` bindings as compact JSON.

For every public class: its kind (class or enum), enum member names, and every attribute with its
kind (method or property) and, for methods, the parameter names of each overload, parsed from the
pybind11 signatures in the docstrings. That is what the project's API-surface test and the
TensorRT stand-in used in tests compare against. Run through ``regenerate.sh``.
"""

from __future__ import annotations

import inspect
import json
import re
import sys

import tensorrt as trt

_SIG = re.compile(r"^(?:\d+\.\s*)?(\w+)\((.*)\)\s*->")


def _split_params(text: str) -> list[str]:
    """Parameter names of one pybind11 signature (``self`` dropped, defaults ignored)."""
    names, depth, current = [], 0, ""
    for ch in text + ",":
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            name = current.split(":", 1)[0].split("=", 1)[0].strip()
            if name and name != "self":
                names.append(name.lstrip("*"))
            current = ""
        else:
            current += ch
    return names


def _overloads(obj) -> list[list[str]]:
    doc = getattr(obj, "__doc__", None) or ""
    out = []
    for line in doc.splitlines():
        match = _SIG.match(line.strip())
        if match:
            out.append(_split_params(match.group(2)))
    return out


def surface() -> dict:
    classes = {}
    for name in sorted(dir(trt)):
        if name.startswith("_") and name != "__version__":
            continue
        obj = getattr(trt, name)
        if inspect.ismodule(obj):
            continue
        if inspect.isclass(obj):
            members = getattr(obj, "__members__", None)
            entry: dict = {"kind": "enum" if members else "class"}
            if members:
                entry["members"] = sorted(members)
            attrs = {}
            for attr in sorted(vars(obj)):
                if attr.startswith("_") and attr != "__init__":
                    continue
                if members and attr in members:
                    continue
                value = vars(obj)[attr]
                if inspect.isclass(value) and getattr(value, "__members__", None):
                    attrs[attr] = {"kind": "enum", "members": sorted(value.__members__)}
                elif isinstance(value, property):
                    attrs[attr] = {"kind": "property", "settable": value.fset is not None}
                elif callable(value):
                    attrs[attr] = {"kind": "method", "overloads": _overloads(value)}
                else:
                    attrs[attr] = {"kind": type(value).__name__}
            entry["attrs"] = attrs
            entry["bases"] = [
                b.__name__ for b in obj.__mro__[1:-1] if b.__name__ != "pybind11_object"
            ]
            classes[name] = entry
        elif callable(obj):
            classes[name] = {"kind": "function", "overloads": _overloads(obj)}
        else:
            classes[name] = {"kind": type(obj).__name__}
    return {"version": trt.__version__, "module": classes}


if __name__ == "__main__":
    json.dump(surface(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
