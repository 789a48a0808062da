"""Generators of hostile inputs, one function per class: nothing hostile is checked in.

Each generator writes into a folder and returns what to pass on the command line (a path, a
URL, a glob). The classes are those earlier attacks found (issues 11 and 21): files that are not
files (FIFO, ``/dev/zero``, folders), symlink loops, corrupt and truncated files, decompression
bombs and extreme aspect ratios, names that are not UTF-8 or longer than a filesystem allows,
ONNX files with odd dims, dtypes and outputs, external data that points outside its folder,
tampered sidecars and calibration caches, objects inside ``.npz`` files and malformed URLs.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper
from PIL import Image

#: A name of 240 bytes: with the toolkit's temp suffixes it passes NAME_MAX (255).
LONG = "n" * 236


def png(path: Path, size: tuple[int, int] = (40, 36), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width``×``height`` and holds one row (a bomb as a reader first sees it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 64))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", row) + chunk(b"IEND", b""))
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def loop_folder(path: Path) -> Path:
    """A folder of two good images with symlink loops: ``l1 -> .``, ``sub/up -> ..``."""
    path.mkdir()
    png(path / "a.png")
    (path / "sub").mkdir()
    png(path / "sub" / "b.png", seed=1)
    (path / "l1").symlink_to(".")
    (path / "sub" / "up").symlink_to("..")
    return path


def symlink_loop_file(path: Path) -> Path:
    """``x -> x``: opening it fails with ELOOP."""
    path.symlink_to(path.name)
    return path


def tiny_onnx(
    path: Path,
    in_shape: list,
    out_shape: list | None = None,
    *,
    dtype: int = TensorProto.FLOAT,
    outputs: int = 1,
    external: str | None = None,
) -> Path:
    """A one-node ONNX (``Identity`` or a ``Flatten`` to ``out_shape``) with the given input.

    ``external``: store one initializer as external data under this ``location`` (written as is,
    so an absolute path or one with ``..`` stays in the file, as an attacker would leave it).
    """
    x = helper.make_tensor_value_info("input", dtype, in_shape)
    nodes, outs, inits = [], [], []
    for i in range(outputs):
        name = f"out{i}"
        nodes.append(helper.make_node("Identity", ["input"], [name]))
        outs.append(helper.make_tensor_value_info(name, dtype, out_shape or in_shape))
    if external is not None:
        w = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 2.0, 3.0, 4.0])
        w.data_location = TensorProto.EXTERNAL
        del w.float_data[:]
        for key, value in (("location", external), ("offset", "0"), ("length", "16")):
            entry = w.external_data.add()
            entry.key, entry.value = key, value
        inits.append(w)
        nodes.append(helper.make_node("Identity", ["w"], ["w_out"]))
        outs.append(helper.make_tensor_value_info("w_out", TensorProto.FLOAT, [4]))
    graph = helper.make_graph(nodes, "hostile", [x], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


@dataclass(frozen=True)
class Case:
    """One hostile input: ``slot`` says which argument of a command it replaces."""

    name: str
    slot: str  # onnx | images | labels | output | checkpoint | data | plan | url
    make: Callable[[Path], str]
    #: exit codes the commands may give; 0 where a command records bad items and carries on
    codes: tuple[int, ...] = (2,)
    #: a family of cases a command may tolerate as a whole: ``onnx-servable`` (symbolic dims, a
    #: rank-2 or integer input, a huge declared input: a repository can describe them) and
    #: ``onnx-broken`` (zero or negative dims, no outputs), which ``inspect`` may describe
    group: str = ""


def _in(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _plan_with_sidecar(folder: Path, sidecar: object) -> str:
    plan = _in(folder, "m.plan")
    plan.write_bytes(b"not really an engine" * 10)
    Path(str(plan) + ".json").write_text(json.dumps(sidecar))
    return str(plan)


def _sidecar(**changes: object) -> dict:
    """A sidecar shaped like the one ``build-engine`` writes, with fields replaced."""
    base = {
        "format": "deploy-ran engine sidecar",
        "format_version": 1,
        "model": "ran56_cifar",
        "precision": "fp32",
        "outputs": ["logits"],
        "input": {
            "name": "input",
            "dtype": "float32",
            "shape": [-1, 3, 32, 32],
            "profile": {"min": [1, 3, 32, 32], "opt": [1, 3, 32, 32], "max": [2, 3, 32, 32]},
        },
        "tensorrt_version": "10.3.0",
        "gpu": {"name": "x", "compute_capability": "8.0", "index": 0},
        "build_options": {},
    }
    base.update(changes)
    return base


def _input(**changes: object) -> dict:
    spec = dict(_sidecar()["input"])
    spec.update(changes)
    return spec


def _external_data(folder: Path, location: str) -> str:
    victim = folder.parent / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "data.bin").write_bytes(b"\x00" * 16)
    return str(tiny_onnx(_in(folder, "ext.onnx"), [1, 3, 8, 8], external=location))


def _latin1(folder: Path) -> str:
    path = _in(folder, "labels.txt")
    path.write_bytes("".join(f"caf\xe9 {i}\n" for i in range(10)).encode("latin-1"))
    return str(path)


def _images_list(folder: Path, *entries: str) -> str:
    lst = _in(folder, "list.txt")
    lst.write_text("\n".join(entries) + "\n")
    return str(lst)


def _npz_object(folder: Path) -> str:
    path = _in(folder, "obj.npz")
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    return str(path)


def _non_utf8_folder(folder: Path) -> str:
    sub = _in(folder, "imgs")
    sub.mkdir()
    png(Path(os.fsdecode(os.fsencode(str(sub)) + b"/caf\xe9.png")))
    return str(sub)


CASES: list[Case] = [
    # --- ONNX-file slot ------------------------------------------------------------------
    Case("onnx-corrupt", "onnx", lambda d: str(_write(_in(d, "c.onnx"), os.urandom(4096)))),
    Case("onnx-empty", "onnx", lambda d: str(_write(_in(d, "e.onnx"), b""))),
    Case("onnx-fifo", "onnx", lambda d: str(fifo(_in(d, "f.onnx")))),
    Case("onnx-dev-zero", "onnx", lambda d: "/dev/zero"),
    Case("onnx-folder", "onnx", lambda d: str(_mkdir(_in(d, "dir.onnx")))),
    Case("onnx-symlink-loop", "onnx", lambda d: str(symlink_loop_file(_in(d, "loop.onnx")))),
    Case("onnx-external-absolute", "onnx", lambda d: _external_data(d, "/etc/hostname")),
    Case("onnx-external-dotdot", "onnx", lambda d: _external_data(d, "../victim/data.bin")),
    Case("onnx-symbolic-dims", "onnx", lambda d: str(tiny_onnx(_in(d, "s.onnx"), ["b", "c", "h", "w"])), group="onnx-servable"),
    Case("onnx-zero-dim", "onnx", lambda d: str(tiny_onnx(_in(d, "z.onnx"), [1, 3, 0, 32])), group="onnx-broken"),
    Case("onnx-negative-dim", "onnx", lambda d: str(tiny_onnx(_in(d, "n.onnx"), [1, 3, -5, 32])), group="onnx-broken"),
    Case("onnx-rank2-input", "onnx", lambda d: str(tiny_onnx(_in(d, "r2.onnx"), [1, 10])), group="onnx-servable"),
    Case("onnx-zero-outputs", "onnx", lambda d: str(tiny_onnx(_in(d, "o0.onnx"), [1, 3, 32, 32], outputs=0)), group="onnx-broken"),
    Case("onnx-huge-input", "onnx", lambda d: str(tiny_onnx(_in(d, "h.onnx"), [1, 3, 100000, 100000])), group="onnx-servable"),
    Case("onnx-int-dtype", "onnx", lambda d: str(tiny_onnx(_in(d, "i.onnx"), [1, 3, 32, 32], dtype=TensorProto.INT32)), group="onnx-servable"),
    Case("onnx-missing", "onnx", lambda d: str(d / "nope.onnx")),
    # --- image-source slot ----------------------------------------------------------------
    Case("images-symlink-loops", "images", lambda d: str(loop_folder(_in(d, "loops"))), (0, 2)),
    Case("images-glob-over-loops", "images", lambda d: str(loop_folder(_in(d, "gl"))) + "/**/*.png", (0, 2)),
    Case("images-list-fifo", "images", lambda d: _images_list(d, str(fifo(_in(d, "p.png")))), (0, 2)),
    Case("images-list-dev-zero", "images", lambda d: _images_list(d, "/dev/zero"), (0, 2)),
    Case("images-list-folder", "images", lambda d: _images_list(d, str(_mkdir(_in(d, "x.png")))), (0, 2)),
    Case("images-bomb", "images", lambda d: str(png_header(_in(d, "bomb.png"), 60000, 60000)), (0, 2)),
    Case("images-aspect", "images", lambda d: str(png(_in(d, "strip.png"), (20000, 1))), (0, 2)),
    Case("images-corrupt", "images", lambda d: str(_write(_in(d, "bad.png"), b"\x89PNG\r\n\x1a\n junk")), (0, 2)),
    Case("images-non-utf8-name", "images", _non_utf8_folder, (0, 2)),
    Case("images-list-fifo-itself", "images", lambda d: str(fifo(_in(d, "l.txt")))),
    Case("images-missing", "images", lambda d: str(d / "nowhere")),
    # --- labels slot ----------------------------------------------------------------------
    Case("labels-latin1", "labels", _latin1),
    Case("labels-fifo", "labels", lambda d: str(fifo(_in(d, "lab.txt")))),
    Case("labels-dev-zero", "labels", lambda d: "/dev/zero"),
    Case("labels-folder", "labels", lambda d: str(_mkdir(_in(d, "labdir")))),
    # --- data slot (.npy / .npz) ------------------------------------------------------------
    Case("data-npz-object", "data", _npz_object),
    Case("data-npy-corrupt", "data", lambda d: str(_write(_in(d, "c.npy"), b"\x93NUMPY junk"))),
    Case("data-npy-fifo", "data", lambda d: str(fifo(_in(d, "f.npy")))),
    # --- checkpoint slot ----------------------------------------------------------------------
    Case("checkpoint-corrupt", "checkpoint", lambda d: str(_write(_in(d, "c.pt"), os.urandom(512)))),
    Case("checkpoint-fifo", "checkpoint", lambda d: str(fifo(_in(d, "f.pt")))),
    Case("checkpoint-dev-zero", "checkpoint", lambda d: "/dev/zero"),
    # --- output slot (the input itself is added by the sweep: outputs over inputs) ------------
    Case("output-long-name", "output", lambda d: "{out}/" + LONG + ".out", (0, 2)),
    Case("output-missing-folder", "output", lambda d: "{out}/no/such/out.json"),
    Case("output-over-input", "output", lambda d: "{input}"),
    # --- plan slot: tampered sidecars -----------------------------------------------------------
    Case("sidecar-shape-string", "plan", lambda d: _plan_with_sidecar(d, _sidecar(input=_input(shape="3x32x32")))),
    Case("sidecar-input-list", "plan", lambda d: _plan_with_sidecar(d, _sidecar(input=["input"]))),
    Case("sidecar-outputs-int", "plan", lambda d: _plan_with_sidecar(d, _sidecar(outputs=7))),
    Case("sidecar-profile-string", "plan", lambda d: _plan_with_sidecar(d, _sidecar(input=_input(profile="max")))),
    Case("sidecar-profile-nested", "plan", lambda d: _plan_with_sidecar(d, _sidecar(input=_input(profile={"min": "a", "opt": None, "max": [[1]]})))),
    Case("sidecar-gpu-string", "plan", lambda d: _plan_with_sidecar(d, _sidecar(gpu="A100"))),
    Case("sidecar-not-object", "plan", lambda d: _plan_with_sidecar(d, [1, 2, 3])),
    Case("sidecar-fifo", "plan", lambda d: _plan_fifo_sidecar(d)),
    # --- URL slot -----------------------------------------------------------------------------
    Case("url-ipv6-unclosed", "url", lambda d: "triton://[::1/ran"),
    Case("url-bad-port", "url", lambda d: "triton://localhost:99999/ran"),
    Case("url-no-model", "url", lambda d: "triton://localhost:8000/"),
    Case("url-nothing-listens", "url", lambda d: f"triton://127.0.0.1:{_free_port()}/ran"),
]


def _plan_fifo_sidecar(folder: Path) -> str:
    plan = _in(folder, "f.plan")
    plan.write_bytes(b"x" * 64)
    fifo(Path(str(plan) + ".json"))
    return str(plan)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def classes() -> list[str]:
    """The input classes (slot names) the corpus covers."""
    return sorted({c.slot for c in CASES})
