"""Ray for ``infer --ray``: importing it, joining or starting it, and quieting Ray Data for a run.

Ray is an optional dependency (``pip install 'deploy-ran[ray]'``): :func:`import_ray` says how to
install it. :func:`ray_session` joins the Ray this process already joined, the cluster at an
address, or starts a private local one; :func:`ray_data_context` sets Ray Data's options for one
run and restores them (and its loggers) afterwards, whatever happens.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deploy_ran.errors import DeployRanError

INSTALL_HINT = "Install Ray Data: pip install 'deploy-ran[ray]' (or pip install 'ray[data]')."


# Ray's servers listen on loopback only when the node IP is 127.0.0.1, and ray.init replaces
# 127.0.0.1 by the host's address unless this is "0" when ray is first imported (Ray 2.60; the
# single-machine mode Ray uses on macOS and Windows). Set only for a private local Ray.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray(loopback_only: bool = False) -> Any:
    """``ray`` with Ray Data, or a :class:`DeployRanError` saying how to install it.

    ``loopback_only``: a Ray started later by this process listens on 127.0.0.1 only (effective
    when ``ray`` is imported here for the first time).
    """
    if loopback_only and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks pandas/pyarrow)
    except ImportError as exc:
        raise DeployRanError(
            f"infer --ray needs Ray Data, which is not installed ({exc}).", hint=INSTALL_HINT
        ) from None
    return ray


def starts_local_ray(address: str | None) -> bool:
    """No Ray joined yet, no address given or in RAY_ADDRESS: a private local Ray is started."""
    ray = sys.modules.get("ray")
    joined = ray is not None and ray.is_initialized()
    return not joined and address is None and not os.environ.get("RAY_ADDRESS")


def unwrap_task_error(ray: Any, exc: Exception) -> Exception:
    """The user's error inside a failed Ray task (a DeployRanError keeps its hint).

    Works for plain tasks (the probe); Ray Data keeps only the text of an error raised in a
    ``map_batches`` function, which is why the probe checks everything it can first.
    """
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, DeployRanError):
        return cause
    return exc


def no_progress_bar_note(record: logging.LogRecord) -> bool:
    """Drops Ray Data's note that progress bars are off (``infer`` shows its own)."""
    return "Progress bars disabled" not in record.getMessage()


#: Seconds to wait for a Ray head's port to answer before giving up: ``ray.init`` itself retries
#: an address where nothing listens for minutes without saying anything.
CONNECT_TIMEOUT_S = 10.0

RAY_HINT = (
    "Start the cluster with `ray start --head` (it prints the address), then pass "
    "address=HOST:6379 (or address=ray://HOST:10001 for Ray Client), or set RAY_ADDRESS; "
    "address=auto joins the cluster this node belongs to. Check the host and port, and that "
    "a firewall lets this machine reach it."
)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds when nothing answers at a ``HOST:PORT`` or
    ``ray://HOST:PORT`` address (``auto`` and ``local`` are Ray's to resolve)."""
    import socket
    from urllib.parse import urlsplit

    text = address.strip()
    if text in ("auto", "local", ""):
        return
    try:
        parts = urlsplit(text if "://" in text else f"ray-gcs://{text}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise DeployRanError(
            f"Ray address {address!r} is malformed ({exc}).", hint=RAY_HINT, param="address"
        ) from None
    if not host or port is None:
        raise DeployRanError(
            f"Ray address {address!r} needs a host and a port.", hint=RAY_HINT, param="address"
        )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise DeployRanError(
            f"Cannot connect to the Ray cluster at {address}: nothing answered at {host}:{port} "
            f"within {timeout:g} s ({exc.strerror or exc}).",
            hint=RAY_HINT,
            param="address",
        ) from None


@contextmanager
def ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """Join the running Ray, the cluster at ``address``, or start a private local one.

    A Ray already initialised in this process (a notebook, a test) is used as it is and left
    running. ``address=None`` without ``RAY_ADDRESS`` starts a local Ray bound to 127.0.0.1, with
    no dashboard, whose workers import the same ``deploy_ran`` as this process; it is shut down
    at the end.
    """
    if ray.is_initialized():
        yield
        return
    if starts_local_ray(address):
        root = Path(__file__).resolve().parents[2]
        env: dict[str, str] = {}
        if (root / "pyproject.toml").exists():  # a source checkout: workers import this copy
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(root), os.environ.get("PYTHONPATH")) if p
            )
        ray.init(
            address="local",
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            runtime_env={"env_vars": env},
            log_to_driver=False,
            logging_level=logging.WARNING,  # the caller shows progress and the summary
        )
    else:
        check_reachable(address or os.environ["RAY_ADDRESS"])
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DeployRanError(
                f"Cannot connect to the Ray cluster at {address or os.environ['RAY_ADDRESS']}: "
                f"{exc}",
                hint=RAY_HINT,
                param="address",
            ) from None
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def ray_data_context(ray: Any, no_progress_timeout_s: float | None = None) -> Iterator[Any]:
    """Ray Data's options for one ``infer`` run, restored on leaving (an error included).

    Order preserved (the file lists images in input order), progress bars off (the caller reports
    progress), and Ray Data's per-run INFO lines (execution plan, "finished in ...") and its note
    that progress bars are off silenced: they repeat what the caller shows; its other warnings
    still print. ``no_progress_timeout_s``: a stalled job fails after that long instead of hanging.
    """
    ctx = ray.data.DataContext.get_current()
    saved = (
        ctx.execution_options.preserve_order,
        ctx.enable_progress_bars,
        ctx.execution_no_progress_timeout_s,
    )
    data_log = logging.getLogger("ray.data")
    saved_level = data_log.level
    progress_log = logging.getLogger("ray.data._internal.progress")
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    data_log.setLevel(max(logging.WARNING, data_log.getEffectiveLevel()))
    progress_log.addFilter(no_progress_bar_note)
    if no_progress_timeout_s is not None:
        ctx.execution_no_progress_timeout_s = no_progress_timeout_s
    try:
        yield ctx
    finally:
        progress_log.removeFilter(no_progress_bar_note)
        data_log.setLevel(saved_level)
        (
            ctx.execution_options.preserve_order,
            ctx.enable_progress_bars,
            ctx.execution_no_progress_timeout_s,
        ) = saved
