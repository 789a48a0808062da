"""The committed TensorRT API surfaces (see tools/trt_api/regenerate.sh)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SURFACE_DIR = Path(__file__).resolve().parents[1] / "data" / "trt_api"
SUPPORTED_VERSIONS = ("10.3.0", "10.16.1.11", "11.4.0.106")


@cache
def load_surface(version: str) -> dict:
    """``{"version": ..., "module": {name: entry}}`` for one TensorRT version."""
    return json.loads((SURFACE_DIR / f"tensorrt-{version}.json").read_text(encoding="utf-8"))


def class_entry(version: str, name: str) -> dict | None:
    return load_surface(version)["module"].get(name)


def attr_entry(version: str, cls: str, attr: str) -> dict | None:
    entry = class_entry(version, cls)
    if entry is None:
        return None
    return entry.get("attrs", {}).get(attr)


def has_member(version: str, enum: str, member: str) -> bool:
    entry = class_entry(version, enum)
    return bool(entry) and member in entry.get("members", [])
