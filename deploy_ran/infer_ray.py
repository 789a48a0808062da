"""``infer --ray``: the same predictions as local ``infer``, computed by Ray Data on a cluster.

Local ``infer`` tops out at one machine's decoders and one runner. Here Ray Data spreads both:

- the driver (this process) finds the images, takes the output's lock and, like local ``infer``,
  checks what an output already holds (``resume``: its producer record, then its records) and
  keeps the paths still to do;
- CPU tasks decode and preprocess them (``map_batches``), each image through
  :func:`deploy_ran.infer.decode_image`, so an unreadable file becomes an error string, never a
  failed task, and decoding scales with the cluster's CPUs rather than with the model workers;
- an actor pool runs the model (``map_batches`` with ``concurrency=workers``): one runner per
  actor built by :func:`deploy_ran.runners.load_runner`, ``num_gpus`` per actor from
  ``gpus_per_worker`` (fractions let several actors share a GPU), records built by
  :func:`deploy_ran.infer.predict_records` exactly as the local loop builds them;
- the driver is the one writer, through :func:`deploy_ran.infer.write_batches`: it appends each
  batch of records to the JSON Lines/CSV output in input order and flushes, so a killed job loses
  at most the batches in flight and ``resume`` picks up from the file; the producer record,
  ``overwrite`` through a temporary file and a full disk behave as in local ``infer``.

Before any image flows, one probe task with a worker's resources builds the runner and applies
:func:`deploy_ran.infer.check_runner`, so a wrong output name or label count fails with the same
error as local ``infer`` instead of inside an actor; it also returns the producer record the
output must carry. Paths travel through Ray as bytes, so a file name that is not UTF-8 is
recorded exactly as local ``infer`` records it.

On a cluster every node must import ``deploy_ran`` (install it on each node, or ship it with
``ray job submit --runtime-env-json``) and see the images and the model file at the same paths
(a shared file system). Ray is an optional dependency: ``pip install 'deploy-ran[ray]'``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.errors import DeployRanError
from deploy_ran.infer import (
    InferResult,
    check_request,
    check_runner,
    decode_image,
    output_lock,
    plan_output,
    predict_records,
    producer_identity,
    read_labels,
    request_inputs,
    write_batches,
)

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


# ------------------------------------------------------------------- what runs on the workers


def _decode_batch(batch: dict[str, np.ndarray], preprocessing: dict) -> dict[str, np.ndarray]:
    """Ray task: paths (bytes) → preprocessed arrays (zeros where unreadable) + error strings."""
    shape = (3, int(preprocessing["crop_size"]), int(preprocessing["crop_size"]))
    arrays, errors = [], []
    for path in batch["path"]:
        array, error = decode_image(os.fsdecode(bytes(path)), preprocessing)
        arrays.append(array if array is not None else np.zeros(shape, np.float32))
        errors.append(error or "")
    return {
        "index": np.asarray(batch["index"], dtype=np.int64),
        "path": np.asarray([bytes(p) for p in batch["path"]], dtype=object),
        "pixels": np.stack(arrays),
        "error": np.asarray(errors, dtype=object),
    }


class _Predictor:
    """Ray actor: one runner, built once; a batch of decoded images → JSON-encoded records."""

    def __init__(
        self,
        target: str,
        runner_kwargs: dict[str, Any],
        output_name: str,
        batch_size: int | None,
        topk: int,
        label_names: list[str] | None,
    ) -> None:
        from deploy_ran.runners import load_runner

        self.runner = load_runner(target, **runner_kwargs)
        self.output_name = output_name
        self.batch_size = batch_size
        self.topk = topk
        self.label_names = label_names

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [
            (os.fsdecode(bytes(path)), None if err else np.asarray(pixels), str(err) or None)
            for path, pixels, err in zip(batch["path"], batch["pixels"], batch["error"])
        ]
        records, _ = predict_records(
            self.runner,
            items,
            output_name=self.output_name,
            batch_size=self.batch_size,
            topk=self.topk,
            label_names=self.label_names,
        )
        # JSON text keeps each record exactly (nested top-k, optional labels) through Arrow.
        encoded = [json.dumps(r, ensure_ascii=False, allow_nan=False) for r in records]
        return {"index": batch["index"], "record": np.asarray(encoded, dtype=object)}


def _probe(
    target: str,
    runner_kwargs: dict[str, Any],
    output_name: str | None,
    topk: int,
    label_names: list[str] | None,
    labels: str | None,
    fmt: str,
) -> dict[str, Any]:
    """Ray task with a worker's resources: can a worker build this runner, and is it usable?

    One blank image goes through :func:`predict_records` too, so an output that is not
    ``[batch, classes]`` logits fails here rather than in every actor. Returns what the driver
    needs, the producer record of the output included (the runner lives on the workers).
    """
    from deploy_ran.runners import load_runner

    with load_runner(target, **runner_kwargs) as runner:
        name = check_runner(
            runner, output_name=output_name, topk=topk, label_names=label_names, labels=labels
        )
        blank = np.zeros(runner.input_spec[0].shape_for(1)[1:], np.float32)
        predict_records(
            runner,
            [("blank", blank, None)],
            output_name=name,
            batch_size=None,
            topk=topk,
            label_names=label_names,
        )
        return {
            "output_name": name,
            "preprocessing": dict(runner.preprocessing or {}),
            "fixed_batch": runner.fixed_batch,
            "runner": runner.describe(),
            "producer": producer_identity(runner, name, topk, labels, fmt),
        }


# --------------------------------------------------------------------------------- the driver


def _check_devices(device: str, gpus_per_worker: float, workers: int | None) -> None:
    if gpus_per_worker < 0:
        raise DeployRanError(
            f"gpus_per_worker must be ≥ 0, got {gpus_per_worker}.",
            hint="Use 1 (one GPU per worker), a fraction such as 0.5 to share GPUs, or 0 on CPUs.",
            param="gpus_per_worker",
        )
    if workers is not None and workers < 1:
        raise DeployRanError(
            f"workers must be ≥ 1 on Ray, got {workers}.",
            hint="Use e.g. workers=2.",
            param="workers",
        )
    if device not in ("cpu", "cuda"):
        raise DeployRanError(
            f"device={device!r} cannot be used on Ray.",
            hint="Ray gives each worker its GPUs: use device='cuda' with gpus_per_worker, or "
            "device='cpu'.",
            param="device",
        )
    if device == "cuda" and gpus_per_worker == 0:
        raise DeployRanError(
            "device='cuda' on Ray needs GPUs for the workers.",
            hint="Set gpus_per_worker=1 (or a fraction such as 0.5 to share a GPU).",
            param="gpus_per_worker",
        )
    if device == "cpu" and gpus_per_worker > 0:
        raise DeployRanError(
            f"gpus_per_worker={gpus_per_worker:g} gives each worker a GPU that device='cpu' "
            "would not use.",
            hint="Set device='cuda', or gpus_per_worker=0.",
            param="device",
        )


@contextmanager
def _ray_session(ray: Any, address: str | None) -> Iterator[None]:
    """Join the running Ray, the cluster at ``address``, or start a private local one.

    A Ray already initialised in this process (a notebook, a test) is used as it is and left
    running. ``address=None`` without ``RAY_ADDRESS`` starts a local Ray bound to 127.0.0.1, with
    no dashboard, whose workers import the same ``deploy_ran`` as this process; it is shut down
    at the end.
    """
    if ray.is_initialized():
        yield
        return
    if _starts_local_ray(address):
        root = Path(__file__).resolve().parents[1]
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
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise DeployRanError(
                f"Cannot connect to the Ray cluster at {address or os.environ['RAY_ADDRESS']}: "
                f"{exc}",
                hint="Start one with `ray start --head` and pass address='auto' (on a node of "
                "the cluster) or address='HOST:PORT'.",
                param="address",
            ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _starts_local_ray(address: str | None) -> bool:
    """No Ray joined yet, no address given or in RAY_ADDRESS: a private local Ray is started."""
    ray = sys.modules.get("ray")
    joined = ray is not None and ray.is_initialized()
    return not joined and address is None and not os.environ.get("RAY_ADDRESS")


def _unwrap(ray: Any, exc: Exception) -> Exception:
    """The user's error inside a failed Ray task (a DeployRanError keeps its hint).

    Works for plain tasks (the probe); Ray Data keeps only the text of an error raised in a
    ``map_batches`` function, which is why the probe checks everything it can first.
    """
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, DeployRanError):
        return cause
    return exc


def _no_progress_bar_note(record: logging.LogRecord) -> bool:
    """Drops Ray Data's note that progress bars are off (``infer`` shows its own)."""
    return "Progress bars disabled" not in record.getMessage()


def run_inference_ray(
    target: str | Path,
    images: str | Path | Sequence[str | Path],
    output: str | Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    cpus_per_worker: float | None = None,
    batch_size: int = 32,
    topk: int = 5,
    labels: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "cpu",
    checkpoint: str | Path | None = None,
    precision: str | None = None,
    providers: str | None = None,
    threads: int | None = None,
    output_name: str | None = None,
    no_progress_timeout_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> InferResult:
    """Predict the top-k classes of every image in ``images`` into ``output``, on Ray Data.

    Same arguments, checks, records, output file and resume rules as
    :func:`deploy_ran.infer.run_inference`, plus: ``address`` (``None``: the Ray this process
    already joined, else ``RAY_ADDRESS``, else a private local Ray; ``"auto"``: the cluster this
    node belongs to; ``"HOST:PORT"``), ``workers`` model actors (default: as many as the
    cluster's GPUs allow with ``gpus_per_worker``, else 1), ``gpus_per_worker`` GPUs per actor
    (fractions share a GPU; needs ``device="cuda"``), ``cpus_per_worker`` CPUs Ray reserves per
    actor (default: at most 1, and the actors together at most a quarter of the cluster's CPUs,
    so the decode tasks always have CPUs left; two actors at one CPU each would starve them on
    two cores), and ``no_progress_timeout_s``, after which a stalled Ray Data job fails instead of
    hanging. ``target`` and the images must be readable at the same paths on every node.
    """
    from deploy_ran.images import find_images

    output, fmt = check_request(
        output,
        batch_size=batch_size,
        topk=topk,
        resume=resume,
        overwrite=overwrite,
        inputs=request_inputs(target, images, labels, checkpoint),
    )
    _check_devices(device, gpus_per_worker, workers)
    if cpus_per_worker is not None and cpus_per_worker <= 0:
        raise DeployRanError(
            f"cpus_per_worker must be > 0, got {cpus_per_worker}.",
            hint="Use 0.5 or 1.",
            param="cpus_per_worker",
        )
    label_names = read_labels(labels) if labels is not None else None
    with_labels = label_names is not None
    paths = find_images(images)
    runner_kwargs: dict[str, Any] = {
        "device": device,
        "checkpoint": str(checkpoint) if checkpoint is not None else None,
        "precision": precision,
        "providers": providers,
        "threads": threads,
    }
    ray = import_ray(loopback_only=_starts_local_ray(address))

    with _ray_session(ray, address):
        cluster = ray.cluster_resources()
        total_cpus, total_gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
        if gpus_per_worker > total_gpus:
            raise DeployRanError(
                f"Each worker asks for {gpus_per_worker:g} GPU(s) but the Ray cluster has "
                f"{total_gpus:g}.",
                hint="Start Ray on GPU nodes (`ray start` finds the GPUs), or lower "
                "gpus_per_worker.",
                param="gpus_per_worker",
            )
        if workers is None:
            workers = max(1, int(total_gpus // gpus_per_worker)) if gpus_per_worker else 1
        if cpus_per_worker is None:
            cpus_per_worker = min(1.0, total_cpus / (4 * workers)) if total_cpus else 1.0
        spare = total_cpus - workers * cpus_per_worker
        if spare <= 0:
            raise DeployRanError(
                f"{workers} workers at {cpus_per_worker:g} CPU each take all {total_cpus:g} "
                "CPUs of the Ray cluster; none would be left to decode images.",
                hint="Lower workers (or cpus_per_worker), or add nodes.",
                param="workers",
            )
        decode_cpus = min(1.0, spare)
        resources = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker}

        try:
            info = ray.get(
                ray.remote(**resources)(_probe).remote(
                    str(target),
                    runner_kwargs,
                    output_name,
                    topk,
                    label_names,
                    None if labels is None else str(labels),
                    fmt,
                )
            )
        except Exception as exc:
            raise _unwrap(ray, exc) from None

        with output_lock(output, resume=resume, overwrite=overwrite):
            mode, pending = plan_output(
                output, fmt, info["producer"], paths, topk=topk, with_labels=with_labels,
                resume=resume, overwrite=overwrite,
            )  # fmt: skip
            batch = info["fixed_batch"] or batch_size

            def batches() -> Iterator[list[dict[str, Any]]]:
                if not pending:
                    return
                ds = ray.data.from_items(
                    [{"index": i, "path": os.fsencode(paths[i])} for i in pending],
                    override_num_blocks=math.ceil(len(pending) / batch),
                )
                ds = ds.map_batches(
                    _decode_batch,
                    fn_kwargs={"preprocessing": info["preprocessing"]},
                    batch_size=None,
                    batch_format="numpy",
                    num_cpus=decode_cpus,
                )
                ds = ds.map_batches(
                    _Predictor,
                    fn_constructor_kwargs={
                        "target": str(target),
                        "runner_kwargs": runner_kwargs,
                        "output_name": info["output_name"],
                        "batch_size": None if info["fixed_batch"] else batch,
                        "topk": topk,
                        "label_names": label_names,
                    },
                    batch_size=batch,
                    batch_format="numpy",
                    compute=ray.data.ActorPoolStrategy(size=workers),
                    **resources,
                )
                for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                    yield [json.loads(r) for r in out["record"]]

            ctx = ray.data.DataContext.get_current()
            saved = (
                ctx.execution_options.preserve_order,
                ctx.enable_progress_bars,
                ctx.execution_no_progress_timeout_s,
            )
            ctx.execution_options.preserve_order = True  # the file lists images in input order
            ctx.enable_progress_bars = False  # the caller reports progress
            # Ray Data's per-run INFO lines (execution plan, "finished in ...") and its note that
            # progress bars are off repeat what the caller shows; its other warnings still print.
            data_log = logging.getLogger("ray.data")
            saved_level = data_log.level
            data_log.setLevel(max(logging.WARNING, data_log.getEffectiveLevel()))
            progress_log = logging.getLogger("ray.data._internal.progress")
            progress_log.addFilter(_no_progress_bar_note)
            if no_progress_timeout_s is not None:
                ctx.execution_no_progress_timeout_s = no_progress_timeout_s
            started = time.perf_counter()
            try:
                counts = write_batches(
                    output, fmt, mode, info["producer"], batches(), topk=topk,
                    with_labels=with_labels, total=len(pending), progress=progress,
                )  # fmt: skip
            finally:
                progress_log.removeFilter(_no_progress_bar_note)
                data_log.setLevel(saved_level)
                (
                    ctx.execution_options.preserve_order,
                    ctx.enable_progress_bars,
                    ctx.execution_no_progress_timeout_s,
                ) = saved
        return InferResult.of_run(
            output,
            fmt,
            paths,
            pending,
            counts,
            time.perf_counter() - started,
            batch_size=batch,
            workers=workers,
            producer=info["producer"],
            runner={
                **info["runner"],
                "ray": {
                    "workers": workers,
                    "gpus_per_worker": gpus_per_worker,
                    "cpus_per_worker": cpus_per_worker,
                    "decode_cpus_per_task": decode_cpus,
                },
            },
        )
