"""A real ``tritonserver`` for the tests, from the ``nvidia-pytriton`` wheel, on loopback only.

The ``nvidia-pytriton`` 0.7.0 wheel carries the Triton Inference Server 2.51.0 binary with the
Python backend (no ONNX Runtime or TensorRT backend: those only exist in NVIDIA's container). The
wheel pins ``numpy<2``, so it is never installed into the environment: the first test that needs
the server unpacks it with ``pip install --no-deps --target .cache/tritonserver`` (ignored by git)
and only its binary is used. The Python backend's stub embeds the interpreter's shared
``libpython``, so ``LD_LIBRARY_PATH`` gets ``sysconfig``'s ``LIBDIR``. The stub ignores
``PYTHONPATH`` and takes its packages from the ``python`` first on ``PATH``; its pybind11 code
predates numpy 2 (arrays it returns arrive empty with numpy 2), so that ``python`` is a small venv in
``.cache/tritonserver/stub-venv`` holding only ``numpy<2``, with a ``.pth`` file that adds this
interpreter's packages (ONNX Runtime, Pillow) after it.

When the binary cannot be obtained (no network, another OS), :func:`server_binary` says why and
the tests skip with that reason.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "tritonserver"
PYTRITON = "nvidia-pytriton==0.7.0"


class ServerUnavailable(RuntimeError):
    """The tritonserver binary cannot be obtained or started here (tests skip with the reason)."""


def server_binary() -> Path:
    """Path of a ready ``tritonserver`` folder (``bin/``, ``backends/python`` with its stub)."""
    if not sys.platform.startswith("linux"):
        raise ServerUnavailable("the tritonserver binary from nvidia-pytriton is Linux-only")
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not any(Path(libdir).glob(f"libpython{version}*.so*")):
        raise ServerUnavailable(
            f"the Python backend stub needs a shared libpython{version} in {libdir!r} "
            "(this interpreter was built without --enable-shared)"
        )
    CACHE.mkdir(parents=True, exist_ok=True)
    ready = CACHE / "server"
    with open(CACHE / ".lock", "w") as lock:  # several xdist workers may arrive together
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (ready / "bin" / "tritonserver").exists() and (CACHE / "stub-venv" / "ok").exists():
            return ready
        wheel = CACHE / "wheel"
        if not (wheel / "pytriton" / "tritonserver" / "bin" / "tritonserver").exists():
            shutil.rmtree(wheel, ignore_errors=True)
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                 str(wheel), PYTRITON],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                raise ServerUnavailable(
                    f"`pip install --no-deps --target {wheel} {PYTRITON}` failed: "
                    + (done.stderr.strip().splitlines() or ["no output"])[-1]
                )
        dist = wheel / "pytriton" / "tritonserver"
        stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.exists():
            raise ServerUnavailable(f"{PYTRITON} has no Python backend stub for Python {version}")
        _stub_venv(CACHE / "stub-venv")
        staging = CACHE / "server.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(dist, staging, ignore=shutil.ignore_patterns("python_backend_stubs"))
        shutil.copy2(stub, staging / "backends" / "python" / "triton_python_backend_stub")
        shutil.rmtree(ready, ignore_errors=True)  # a copy from before the stub venv existed
        os.replace(staging, ready)
        return ready


def _stub_venv(venv: Path) -> None:
    """A venv with numpy<2 first and this interpreter's packages after it (see the docstring)."""
    if (venv / "ok").exists():
        return
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = venv / "lib" / version / "site-packages"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         str(packages), "numpy>=1.26,<2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise ServerUnavailable(
            "`pip install numpy<2` for the Python backend stub failed: "
            + (done.stderr.strip().splitlines() or ["no output"])[-1]
        )
    parents = [p for p in sys.path if p and Path(p).is_dir() and Path(p).resolve() != ROOT]
    (packages / "zz_deploy_ran_tests.pth").write_text("\n".join(parents) + "\n")
    (venv / "ok").write_text("")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    libs = [str(folder.parent / "wheel" / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR")]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    env.pop("PYTHONPATH", None)  # the stub ignores it; its packages come from the stub venv
    env["PATH"] = f"{folder.parent / 'stub-venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


@contextlib.contextmanager
def serve(repository: Path, log: Path, timeout: float = 60.0) -> Iterator[Server]:
    """Run tritonserver on ``repository`` (HTTP, gRPC and metrics on 127.0.0.1); stop it after.

    Raises :class:`ServerUnavailable` when the binary cannot be had, and ``RuntimeError`` (with
    the server's log) when it starts but does not become ready: a config it rejects.
    """
    folder = server_binary()
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    command = [
        str(folder / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={folder / 'backends'}",
        f"--cache-directory={folder / 'caches'}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--allow-sagemaker=false",
        "--allow-vertex-ai=false",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--log-verbose=0",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=_environment(folder),
            start_new_session=True,
        )
    server = Server(process, http_port, grpc_port, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"tritonserver exited with code {process.returncode}:\n{server.log_tail()}"
                )
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=1
                ) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver not ready after {timeout} s:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it owns the Python-backend stubs), then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
