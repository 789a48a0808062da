"""A model served by Triton Inference Server (or KServe's Triton runtime) as a runner.

Targets (the scheme picks the protocol; the port defaults to Triton's)::

    triton://HOST[:PORT]/MODEL            HTTP/REST (KServe v2 protocol), port 8000
    triton+http://HOST[:PORT]/MODEL       the same, explicitly
    triton+grpc://HOST[:PORT]/MODEL       gRPC, port 8001
    ...?version=N                         a given model version (default: the server's policy)

The input spec, outputs and batch size come from the server's model metadata and config, and
what the model is (name, preprocessing, classes, precision) from the ``deploy_ran`` JSON
parameter that ``triton-repo`` writes into every config, so ``verify``, ``bench`` and ``infer``
treat a served model like a local file. Timings are client-side: they include the network,
(de)serialisation and the server's queueing (dynamic batching delay included); server-side load
tests belong to ``perf_analyzer``. ``tritonclient`` is optional (``pip install -e ".[triton]"``).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from deploy_ran.artifacts import ArtifactInfo
from deploy_ran.device import Device
from deploy_ran.runners.base import BackendUnavailableError, BaseRunner, RunnerError, TensorSpec
from deploy_ran.runners.registry import register_backend
from deploy_ran.target import Target

#: URL scheme → protocol: the one list (the registry's ``served_schemes()`` reads it from here).
SCHEMES = {"triton": "http", "triton+http": "http", "triton+grpc": "grpc"}
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
METADATA_PARAMETER = "deploy_ran"  # written by exporters.triton (same name there)
LATENCY_NOTE = (
    "client-side latency: network, (de)serialisation and server queueing included; "
    "use perf_analyzer for server-side load tests"
)
# Triton's datatype names → numpy dtype names (BYTES: encoded strings, e.g. images).
_DTYPES = {
    "FP32": "float32",
    "FP16": "float16",
    "FP64": "float64",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "BYTES": "object",
}


def is_triton_target(target: object) -> bool:
    """Whether ``target`` is a ``triton://`` / ``triton+http://`` / ``triton+grpc://`` URL."""
    return isinstance(target, str) and target.split("://", 1)[0].lower() in SCHEMES and "://" in target


@dataclass(frozen=True)
class TritonTarget:
    """A parsed target URL."""

    protocol: str  # "http" | "grpc"
    host: str
    port: int
    model: str
    version: str = ""

    @property
    def url(self) -> str:
        """``host:port`` as tritonclient wants it."""
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        scheme = "triton+grpc" if self.protocol == "grpc" else "triton"
        query = f"?version={self.version}" if self.version else ""
        return f"{scheme}://{self.url}/{self.model}{query}"


def parse_target(text: str) -> TritonTarget:
    """Parse a target URL (see the module docstring), with a clear error for a malformed one."""
    example = "triton://localhost:8000/ran92 or triton+grpc://localhost:8001/ran92"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - a malformed IPv6 host or port raises here
    except ValueError as exc:
        raise RunnerError(
            f"{text!r} is not a valid URL ({exc}).",
            hint=f"Use {example}; an IPv6 host goes in brackets: triton://[::1]:8000/ran92.",
        ) from None
    protocol = SCHEMES.get(parts.scheme.lower())
    if protocol is None:
        raise RunnerError(
            f"{text!r} is not a Triton target.", hint=f"Use {example}."
        )
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
    except ValueError:
        raise RunnerError(f"{text!r} has an invalid port.", hint=f"Use {example}.") from None
    model = parts.path.strip("/")
    if not parts.hostname or not model or "/" in model:
        raise RunnerError(
            f"{text!r} does not name a host and one model.", hint=f"Use {example}."
        )
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"version"})
    version = (query.get("version") or [""])[-1]
    if unknown or (version and not version.isdigit()):
        raise RunnerError(
            f"{text!r}: only ?version=N is understood in a Triton target"
            + (f" (got {', '.join(unknown)})." if unknown else "."),
            hint="e.g. triton://localhost:8000/ran92?version=1",
        )
    return TritonTarget(protocol, parts.hostname, port, model, version)


def _client_module(protocol: str) -> Any:
    try:
        return importlib.import_module(f"tritonclient.{protocol}")
    except ImportError as exc:
        raise BackendUnavailableError(
            f"The Triton {protocol.upper()} client is not installed ({exc}).",
            hint='pip install -e ".[triton]" (tritonclient[http,grpc]).',
        ) from None


class TritonRunner(BaseRunner):
    """Send batches to a model on a Triton server; outputs come back as numpy arrays."""

    backend = "triton"

    def __init__(
        self, target: str, *, device: str | None = None, timeout: float = 60.0
    ) -> None:
        """``device`` is the server's business: only ``None``/``cpu`` (the default) is taken."""
        self.target = parse_target(target)
        if device not in (None, "", "cpu", "remote"):
            raise RunnerError(
                f"--device {device} cannot apply to {target}: the Triton server decides where the "
                "model runs (its config's instance_group).",
                hint="Drop --device for triton:// targets.",
            )
        self._module = _client_module(self.target.protocol)
        from tritonclient.utils import InferenceServerException

        self._server_error = InferenceServerException
        self._timeout = timeout
        # One client per thread: the HTTP client is gevent-based and may only be used from the
        # thread that made it ("Cannot switch to a different thread" when a Ray actor made it in
        # its constructor and called it from its executor thread); gRPC channels are cheap.
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        try:
            metadata, config, server = self._describe_model()
        except BaseException:
            self._close()
            raise
        self.server_version = server.get("version", "unknown")
        self.model_version = str(metadata.get("versions", [self.target.version or "?"])[-1])
        self.max_batch_size = int(config.get("max_batch_size", 0) or 0)
        self.config = config
        if any(t.get("datatype") == "BYTES" for t in metadata.get("inputs", [])):
            self._close()
            model = self.target.model
            behind = model[: -len("_ensemble")] if model.endswith("_ensemble") else "MODEL"
            raise RunnerError(
                f"{self.target.model!r} on {self.target.url} takes encoded bytes (BYTES input), "
                "like the --preprocess ensemble of triton-repo; this runner sends preprocessed "
                "tensors.",
                hint=f"Point verify/infer/bench at the model behind it: "
                f"triton://{self.target.url}/{behind}. To call the ensemble yourself, send "
                "InferInput('IMAGE', [n, 1], 'BYTES') filled with np.array([[file_bytes], ...], "
                "dtype=np.object_) (np.object is gone in NumPy 2).",
            )
        inputs = [self._spec(t) for t in metadata.get("inputs", [])]
        outputs = [t["name"] for t in metadata.get("outputs", [])]
        self._input_dtypes = {t["name"]: t["datatype"] for t in metadata.get("inputs", [])}
        written = self._written_metadata(config)
        props = written.get("onnx_metadata") or {}
        self.info = ArtifactInfo.from_props(props) if props else None
        kinds = sorted({str(g.get("kind", "KIND_AUTO")) for g in config.get("instance_group", [])})
        self.instance_kinds = kinds
        super().__init__(
            name=str(self.target),
            device="remote",
            precision=str(written.get("precision") or "unknown"),
            input_spec=inputs,
            output_names=outputs,
            model=self.info.model if self.info else None,
            preprocessing=(self.info.preprocessing or None) if self.info else None,
            num_classes=self.info.num_classes if self.info else None,
        )

    @property
    def _client(self) -> Any:
        """This thread's client, made on first use in the thread that uses it."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self.target.protocol == "http":
                client = self._module.InferenceServerClient(
                    self.target.url, connection_timeout=self._timeout,
                    network_timeout=self._timeout,
                )  # fmt: skip
            else:
                client = self._module.InferenceServerClient(self.target.url)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    # --------------------------------------------------------------------------- server metadata

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._server_error as exc:
            raise RunnerError(
                f"Triton at {self.target.url} ({self.target.protocol}) failed to {what}: "
                f"{exc.message() if hasattr(exc, 'message') else exc}",
                hint=self._hint(),
            ) from None
        except Exception as exc:  # transport: refused, reset, timed out, a server that died
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
            raise RunnerError(
                f"Triton at {self.target.url} ({self.target.protocol}): server unreachable when "
                f"trying to {what} ({type(exc).__name__}: {first}).",
                hint=self._hint() + " A server that stopped mid-run is not a problem of the "
                "model file: restart it and run again.",
            ) from None

    def _hint(self) -> str:
        port = DEFAULT_PORTS[self.target.protocol]
        return (
            f"Is tritonserver running and serving {self.target.model!r}? HTTP listens on 8000 "
            f"(triton://), gRPC on 8001 (triton+grpc://); this target uses {self.target.protocol} "
            f"(default port {port}). `curl HOST:8000/v2/models/{self.target.model}/ready` checks it."
        )

    def _describe_model(self) -> tuple[dict, dict, dict]:
        model, version = self.target.model, self.target.version
        # gRPC calls take a deadline each; HTTP ones have the client's network timeout.
        as_json = {} if self.target.protocol == "http" else {
            "as_json": True, "client_timeout": self._timeout,
        }  # fmt: skip
        server = self._call("describe itself", self._client.get_server_metadata, **as_json)
        deadline = {} if self.target.protocol == "http" else {"client_timeout": self._timeout}
        ready = self._call(
            f"check model {model!r}", self._client.is_model_ready, model, version, **deadline
        )
        if not ready:
            raise RunnerError(
                f"Model {model!r}{f' version {version}' if version else ''} is not ready on "
                f"Triton at {self.target.url}.",
                hint=self._hint(),
            )
        metadata = self._call(
            "read the model's metadata", self._client.get_model_metadata, model, version, **as_json
        )
        config = self._call(
            "read the model's config", self._client.get_model_config, model, version, **as_json
        )
        config = config.get("config", config)  # gRPC wraps it
        return metadata, config, server

    def _spec(self, tensor: dict[str, Any]) -> TensorSpec:
        dtype = _DTYPES.get(tensor["datatype"])
        if dtype is None:
            raise RunnerError(
                f"Input {tensor['name']} has Triton datatype {tensor['datatype']}, which the "
                "toolkit cannot feed.",
                hint="Serve a model with FP32/FP16/integer inputs (deploy-ran files are FP32).",
            )
        shape = tuple(None if int(d) < 0 else int(d) for d in tensor.get("shape", []))
        return TensorSpec(tensor["name"], shape, dtype)

    @staticmethod
    def _written_metadata(config: dict[str, Any]) -> dict[str, Any]:
        """The ``deploy_ran`` JSON parameter of a config written by ``triton-repo`` ({} if none)."""
        param = (config.get("parameters") or {}).get(METADATA_PARAMETER) or {}
        try:
            data = json.loads(param.get("string_value") or "{}")
        except json.JSONDecodeError:
            return {}
        return data if isinstance(data, dict) else {}

    # ----------------------------------------------------------------------------- the runner

    def run_many(self, inputs, batch_size=None, on_batch=None):
        """As :meth:`BaseRunner.run_many`, refusing batches above the server's max_batch_size."""
        if self.max_batch_size and batch_size and batch_size > self.max_batch_size:
            raise RunnerError(
                f"{self.name} accepts batches of at most {self.max_batch_size} "
                f"(max_batch_size), not {batch_size}.",
                hint=f"Use a batch size ≤ {self.max_batch_size}.",
            )
        if self.max_batch_size and batch_size is None and self.fixed_batch is None:
            batch_size = min(len(inputs), self.max_batch_size) or None
        return super().run_many(inputs, batch_size, on_batch)

    def _stage(self, feed: dict[str, np.ndarray]) -> list[Any]:
        if self.max_batch_size and self.fixed_batch is None:
            batch = next(iter(feed.values())).shape[0]
            if batch > self.max_batch_size:
                raise RunnerError(
                    f"A batch of {batch} is above {self.name}'s max_batch_size "
                    f"{self.max_batch_size}.",
                    hint=f"Send batches of at most {self.max_batch_size}.",
                )
        staged = []
        for name, array in feed.items():
            entry = self._module.InferInput(name, list(array.shape), self._input_dtypes[name])
            if self.target.protocol == "http":
                entry.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            else:
                entry.set_data_from_numpy(np.ascontiguousarray(array))
            staged.append(entry)
        return staged

    def _execute(self, staged: list[Any]) -> Any:
        if self.target.protocol == "http":
            wanted = [self._module.InferRequestedOutput(n, binary_data=True) for n in self.output_names]
            timeout = {}  # the client's network_timeout applies
        else:
            wanted = [self._module.InferRequestedOutput(n) for n in self.output_names]
            timeout = {"client_timeout": self._timeout}
        return self._call(
            "run the model",
            self._client.infer,
            self.target.model,
            staged,
            model_version=self.target.version,
            outputs=wanted,
            **timeout,
        )

    def _fetch(self, outputs: Any) -> dict[str, np.ndarray]:
        return {name: outputs.as_numpy(name) for name in self.output_names}

    def _close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:  # another thread's gevent client may refuse: best effort
            with contextlib.suppress(Exception):
                client.close()

    def _describe_extra(self) -> dict[str, Any]:
        return {
            "url": str(self.target),
            "protocol": self.target.protocol,
            "server_version": self.server_version,
            "model_version": self.model_version,
            "max_batch_size": self.max_batch_size,
            "instance_kinds": self.instance_kinds,
            "latency": LATENCY_NOTE,
        }

    @property
    def label(self) -> str:
        return f"triton {self.precision} ({self.target.protocol} {self.target.url})"


def _from_target(target: Target, device: Device, **options: Any) -> TritonRunner:
    """The registry's factory: the server decides where the model runs, so only the CPU
    default (the client's side) is taken; a CUDA device is refused by the runner."""
    return TritonRunner(target.text, device=None if device.is_cpu else str(device), **options)


register_backend(
    "triton",
    lambda target: target.kind == "served" and target.scheme in SCHEMES,
    _from_target,
    fixed_by="the Triton server runs the model as its config.pbtxt says",
    schemes=tuple(SCHEMES),
)
