"""The named steps of ``infer --ray`` that need no Ray: fitting actors into a cluster, and Ray
Data's options set for one run and restored afterwards (an error included)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from deploy_ran.errors import DeployRanError
from deploy_ran.infer.ray import plan_workers
from deploy_ran.infer.ray_session import no_progress_bar_note, ray_data_context


def test_plan_fills_the_gpus_and_leaves_cpus_to_decode():
    plan = plan_workers({"CPU": 8.0, "GPU": 2.0}, None, 1.0, None)
    assert (plan.workers, plan.cpus_per_worker, plan.decode_cpus) == (2, 1.0, 1.0)
    assert plan.resources == {"num_cpus": 1.0, "num_gpus": 1.0}
    # Two cores: one actor takes at most a quarter of them, so decoding keeps the rest.
    small = plan_workers({"CPU": 2.0}, None, 0.0, None)
    assert (small.workers, small.cpus_per_worker, small.decode_cpus) == (1, 0.5, 1.0)
    assert small.as_dict() == {
        "workers": 1,
        "gpus_per_worker": 0.0,
        "cpus_per_worker": 0.5,
        "decode_cpus_per_task": 1.0,
        "threads_per_worker": 1,
    }
    # Threads asked for are reserved: 2 threads, 2 CPUs (not 0.25 CPU for 2 running threads).
    threaded = plan_workers({"CPU": 4.0}, None, 0.0, None, threads=2)
    assert (threaded.cpus_per_worker, threaded.threads) == (2.0, 2)
    assert threaded.resources["num_cpus"] == 2.0


@pytest.mark.parametrize(
    ("cluster", "workers", "gpus", "cpus", "message", "param"),
    [
        ({"CPU": 4.0}, None, 1.0, None, "Ray cluster has 0", "gpus_per_worker"),
        ({"CPU": 2.0}, 2, 0.0, 1.0, "take all 2 CPUs", "workers"),
    ],
)
def test_plan_refuses_what_the_cluster_cannot_hold(cluster, workers, gpus, cpus, message, param):
    with pytest.raises(DeployRanError, match=message) as err:
        plan_workers(cluster, workers, gpus, cpus)
    assert err.value.param == param


def _fake_ray() -> SimpleNamespace:
    ctx = SimpleNamespace(
        execution_options=SimpleNamespace(preserve_order=False),
        enable_progress_bars=True,
        execution_no_progress_timeout_s=None,
    )
    data = SimpleNamespace(DataContext=SimpleNamespace(get_current=lambda: ctx))
    return SimpleNamespace(data=data)


def test_ray_data_context_sets_options_for_the_run_and_restores_them_after_an_error():
    ray = _fake_ray()
    ctx = ray.data.DataContext.get_current()
    data_log = logging.getLogger("ray.data")
    progress_log = logging.getLogger("ray.data._internal.progress")
    data_log.setLevel(logging.INFO)
    try:
        with pytest.raises(RuntimeError, match="job failed"):
            with ray_data_context(ray, no_progress_timeout_s=30.0) as inside:
                assert inside is ctx
                assert ctx.execution_options.preserve_order is True
                assert ctx.enable_progress_bars is False
                assert ctx.execution_no_progress_timeout_s == 30.0
                assert data_log.level == logging.WARNING
                assert no_progress_bar_note in progress_log.filters
                raise RuntimeError("job failed")
        assert ctx.execution_options.preserve_order is False
        assert ctx.enable_progress_bars is True
        assert ctx.execution_no_progress_timeout_s is None
        assert data_log.level == logging.INFO
        assert no_progress_bar_note not in progress_log.filters
    finally:
        data_log.setLevel(logging.NOTSET)


def test_no_progress_bar_note_drops_only_that_note():
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("ray.data", logging.INFO, __file__, 1, message, None, None)

    assert not no_progress_bar_note(record("Progress bars disabled. To enable, ..."))
    assert no_progress_bar_note(record("Dataset execution finished"))
