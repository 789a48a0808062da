"""Every wait has a bound and a clear end (issue 21, item 4), checked without a cluster."""

from __future__ import annotations

import socket
import time

import pytest

from deploy_ran.errors import DeployRanError
from deploy_ran.infer.ray_session import check_reachable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("form", ["{host}:{port}", "ray://{host}:{port}"])
def test_ray_address_where_nothing_listens_ends_fast_with_a_hint(form):
    address = form.format(host="127.0.0.1", port=_free_port())
    started = time.perf_counter()
    with pytest.raises(DeployRanError, match="nothing answered") as err:
        check_reachable(address, timeout=3)
    assert time.perf_counter() - started < 5
    assert "ray start --head" in err.value.hint and "RAY_ADDRESS" in err.value.hint
    assert err.value.param == "address"


@pytest.mark.parametrize("address", ["[::1:6379", "host-without-port", "ray://:10001"])
def test_malformed_ray_addresses_are_refused(address):
    with pytest.raises(DeployRanError, match="malformed|host and a port"):
        check_reachable(address, timeout=1)


def test_a_listening_address_passes_and_auto_is_left_to_ray():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"127.0.0.1:{server.getsockname()[1]}", timeout=3)
    check_reachable("auto")
