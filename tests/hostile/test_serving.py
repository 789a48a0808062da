"""Serving paths a user combines (issue 21, items 4 and 5), against a real tritonserver.

The HTTP client is made per thread (a Ray actor builds its runner in one thread and runs it in
another: the gevent client used to fail with "Cannot switch to a different thread"); a server
that goes away mid-run is "server unreachable"; the ``--preprocess`` ensemble (encoded bytes in)
is refused by the tensor runner with the model to use instead. Skipped where the tritonserver
binary cannot be had (tests/triton_server.py says why).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="the triton extra (tritonclient) is not installed")

from deploy_ran.errors import DeployRanError  # noqa: E402
from deploy_ran.runners.triton_runner import TritonRunner  # noqa: E402
from exporters.triton import RepoOptions, write_repository  # noqa: E402
from tests import triton_server  # noqa: E402
from tests.triton.test_triton_server import served_copy  # noqa: E402

pytestmark = pytest.mark.slow  # starts its own server (tens of seconds)


def test_threads_lost_server_and_ensemble(tmp_path, cifar_onnx):
    try:
        triton_server.server_binary()
    except triton_server.ServerUnavailable as exc:
        pytest.skip(f"no tritonserver: {exc}")
    repo = tmp_path / "repo"
    write_repository(
        [cifar_onnx], repo, RepoOptions(name="m", kind="cpu", max_batch=4, preprocess=True)
    )
    served = served_copy(repo, tmp_path / "served", ["m"])
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with triton_server.serve(served, tmp_path / "server.log") as running:
        url = f"triton://127.0.0.1:{running.http_port}"
        runner = TritonRunner(f"{url}/m", timeout=20)
        local = runner.run(x)["logits"]
        with ThreadPoolExecutor(2) as pool:  # made in this thread, used from two others
            remote = list(pool.map(lambda _: runner.run(x)["logits"], range(4)))
        for got in remote:
            np.testing.assert_allclose(got, local, rtol=1e-5, atol=1e-5)
        with pytest.raises(DeployRanError, match="BYTES") as err:
            TritonRunner(f"{url}/m_ensemble", timeout=20)
        assert f"{url}/m".split("://")[1] in err.value.hint and "np.object_" in err.value.hint
    # the server is gone now
    with pytest.raises(DeployRanError, match="server unreachable") as lost:
        runner.run(x)
    assert "re-export" not in str(lost.value)
    runner.close()
