"""``infer --ray``: the same predictions as local ``infer``, computed by Ray Data on a cluster.

Local ``infer`` tops out at one machine's decoders and one runner. Here Ray Data spreads both:

- the driver (this process) finds the images, takes the output's lock and, like local ``infer``,
  checks what an output already holds (``resume``: its producer record, then its records) and
  keeps the paths still to do;
- CPU tasks decode and preprocess them (``map_batches``), each image through
  :func:`deploy_ran.infer.dataset.decode_image`, so an unreadable file becomes an error string, never a
  failed task, and decoding scales with the cluster's CPUs rather than with the model workers;
- an actor pool runs the model (``map_batches`` with ``concurrency=workers``): one runner per
  actor built by :func:`deploy_ran.runners.load_runner`, ``num_gpus`` per actor from
  ``gpus_per_worker`` (fractions let several actors share a GPU), records built by
  :func:`deploy_ran.infer.predict.predict_records` exactly as the local loop builds them;
- the driver is the one writer, through :func:`deploy_ran.infer.writer.write_batches`: it appends each
  batch of records to the JSON Lines/CSV output in input order and flushes, so a killed job loses
  at most the batches in flight and ``resume`` picks up from the file; the producer record,
  ``overwrite`` through a temporary file and a full disk behave as in local ``infer``.

Before any image flows, one probe task with a worker's resources builds the runner and applies
:func:`deploy_ran.infer.request.check_runner`, so a wrong output name or label count fails with the same
error as local ``infer`` instead of inside an actor; it also returns the producer record the
output must carry. Paths travel through Ray as bytes, so a file name that is not UTF-8 is
recorded exactly as local ``infer`` records it.

On a cluster every node must import ``deploy_ran`` (install it on each node, or ship it with
``ray job submit --runtime-env-json``) and see the images and the model file at the same paths
(a shared file system). Ray is an optional dependency: ``pip install 'deploy-ran[ray]'``.

The workers' side is :mod:`~deploy_ran.infer.ray_workers`; importing, joining and configuring
Ray is :mod:`~deploy_ran.infer.ray_session`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy_ran.device import Device
from deploy_ran.errors import DeployRanError
from deploy_ran.infer.ray_session import (
    import_ray,
    ray_data_context,
    ray_session,
    starts_local_ray,
    unwrap_task_error,
)
from deploy_ran.infer.ray_workers import Predictor, decode_batch, probe
from deploy_ran.infer.request import check_request, output_lock, read_labels, request_inputs
from deploy_ran.infer.result import InferResult
from deploy_ran.infer.resume import plan_output
from deploy_ran.infer.writer import write_batches
from deploy_ran.onnx_graph import batch_to_run


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
    ray = import_ray(loopback_only=starts_local_ray(address))

    with ray_session(ray, address):
        plan = plan_workers(
            ray.cluster_resources(), workers, gpus_per_worker, cpus_per_worker, threads
        )
        # The actor's runner uses the CPUs Ray reserved for it: no more threads than that.
        runner_kwargs["threads"] = plan.threads
        info = _probe_workers(
            ray, plan, str(target), runner_kwargs, output_name, topk, label_names,
            None if labels is None else str(labels), fmt,
        )  # fmt: skip
        with output_lock(output, resume=resume, overwrite=overwrite):
            mode, pending = plan_output(
                output, fmt, info["producer"], paths, topk=topk, with_labels=with_labels,
                resume=resume, overwrite=overwrite,
            )  # fmt: skip
            batch = batch_to_run(info["fixed_batch"], batch_size)
            batches = _record_batches(
                ray, plan, paths, pending, batch, info, str(target), runner_kwargs, topk,
                label_names,
            )  # fmt: skip
            with ray_data_context(ray, no_progress_timeout_s):
                started = time.perf_counter()
                counts = write_batches(
                    output, fmt, mode, info["producer"], batches, topk=topk,
                    with_labels=with_labels, total=len(pending), progress=progress,
                )  # fmt: skip
        return InferResult.of_run(
            output,
            fmt,
            paths,
            pending,
            counts,
            time.perf_counter() - started,
            batch_size=batch,
            workers=plan.workers,
            producer=info["producer"],
            runner={**info["runner"], "ray": plan.as_dict()},
        )


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
    parsed = Device.parse(device)
    if parsed.index is not None:
        raise DeployRanError(
            f"device={device!r} cannot be used on Ray.",
            hint="Ray gives each worker its GPUs: use device='cuda' with gpus_per_worker, or "
            "device='cpu'.",
            param="device",
        )
    if parsed.is_cuda and gpus_per_worker == 0:
        raise DeployRanError(
            "device='cuda' on Ray needs GPUs for the workers.",
            hint="Set gpus_per_worker=1 (or a fraction such as 0.5 to share a GPU).",
            param="gpus_per_worker",
        )
    if not parsed.is_cuda and gpus_per_worker > 0:
        raise DeployRanError(
            f"gpus_per_worker={gpus_per_worker:g} gives each worker a GPU that device='cpu' "
            "would not use.",
            hint="Set device='cuda', or gpus_per_worker=0.",
            param="device",
        )


@dataclass(frozen=True)
class WorkerPlan:
    """How many model actors, and the resources Ray reserves for each actor and decode task."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    decode_cpus: float
    #: threads each actor's runner uses: what was reserved (at least 1), or the threads asked for
    threads: int = 1

    @property
    def resources(self) -> dict[str, float]:
        """Ray's resource arguments for one model actor (and the probe)."""
        return {"num_cpus": self.cpus_per_worker, "num_gpus": self.gpus_per_worker}

    def as_dict(self) -> dict[str, Any]:
        """The ``ray`` entry of the result's runner description."""
        return {
            "workers": self.workers,
            "gpus_per_worker": self.gpus_per_worker,
            "cpus_per_worker": self.cpus_per_worker,
            "decode_cpus_per_task": self.decode_cpus,
            "threads_per_worker": self.threads,
        }


def plan_workers(
    cluster: dict[str, Any],
    workers: int | None,
    gpus_per_worker: float,
    cpus_per_worker: float | None,
    threads: int | None = None,
) -> WorkerPlan:
    """Fit the model actors into the cluster's resources, leaving CPUs for decoding.

    Default ``workers``: as many as the GPUs allow, else 1; default ``cpus_per_worker``: the
    runner's ``threads`` when given (Ray reserves the CPUs those threads use), else at most 1,
    the actors together at most a quarter of the cluster's CPUs. The runner then uses as many
    threads as were reserved (at least one), so an actor never runs more threads than Ray
    counted for it.
    """
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
        if threads:
            cpus_per_worker = float(threads)
        else:
            cpus_per_worker = min(1.0, total_cpus / (4 * workers)) if total_cpus else 1.0
    spare = total_cpus - workers * cpus_per_worker
    if spare <= 0:
        raise DeployRanError(
            f"{workers} workers at {cpus_per_worker:g} CPU each take all {total_cpus:g} "
            "CPUs of the Ray cluster; none would be left to decode images.",
            hint="Lower workers (or cpus_per_worker), or add nodes.",
            param="workers",
        )
    used = threads or max(1, int(cpus_per_worker))
    return WorkerPlan(workers, cpus_per_worker, gpus_per_worker, min(1.0, spare), used)


def _probe_workers(ray: Any, plan: WorkerPlan, *probe_args: Any) -> dict[str, Any]:
    """Run :func:`~deploy_ran.infer.ray_workers.probe` once with a worker's resources, so a
    runner a worker cannot build or use fails here with its own error (and hint)."""
    try:
        return ray.get(ray.remote(**plan.resources)(probe).remote(*probe_args))
    except Exception as exc:
        raise unwrap_task_error(ray, exc) from None


def _record_batches(
    ray: Any,
    plan: WorkerPlan,
    paths: Sequence[Path],
    pending: Sequence[int],
    batch: int,
    info: dict[str, Any],
    target: str,
    runner_kwargs: dict[str, Any],
    topk: int,
    label_names: list[str] | None,
) -> Iterator[list[dict[str, Any]]]:
    """The records of the pending images, batch by batch in input order: a Ray Data pipeline of
    decode tasks then model actors (built when the first batch is asked for)."""
    if not pending:
        return
    ds = ray.data.from_items(
        [{"index": i, "path": os.fsencode(paths[i])} for i in pending],
        override_num_blocks=math.ceil(len(pending) / batch),
    )
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"preprocessing": info["preprocessing"]},
        batch_size=None,
        batch_format="numpy",
        num_cpus=plan.decode_cpus,
    )
    ds = ds.map_batches(
        Predictor,
        fn_constructor_kwargs={
            "target": target,
            "runner_kwargs": runner_kwargs,
            "output_name": info["output_name"],
            "batch_size": batch,  # the static batch itself when there is one
            "topk": topk,
            "label_names": label_names,
        },
        batch_size=batch,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        **plan.resources,
    )
    for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
        yield [json.loads(r) for r in out["record"]]
