"""Every TensorRT attribute the project uses exists in 10.3, 10.16 and 11.4 — or is version-branched.

Three layers of checking, all against the real API surfaces in tests/data/trt_api (dumped from
the real bindings by tools/trt_api/regenerate.sh):

1. static: every ``trt.Name`` / ``trt.Name.MEMBER`` written in the project exists in all three
   versions, except the ones read through ``getattr(..., default)`` (a version branch), which must
   exist in at least one version and be missing in another (so the branch is real);
2. static: every attribute the TensorRT-facing modules use on TensorRT objects exists in all
   three versions (removed APIs such as ``device_memory_size`` or the INT8 calibrators fail here);
3. dynamic: the stand-in, built from each surface with the real parameter names, runs the build
   and run code (tests/exporters/test_tensorrt_build.py, tests/runners/test_trt_runner.py).
"""

from __future__ import annotations

import ast

import pytest

from tests.paths import ROOT
from tests.trt_standin import SUPPORTED_VERSIONS, build_module, load_surface
from tests.trt_standin.module import IHostMemory, StandinSignatureError, _check_method

PROJECT_FILES = sorted(
    p
    for folder in ("deploy_ran", "exporters", "calibration")
    for p in (ROOT / folder).rglob("*.py")
) + [ROOT / "cli.py"]
TRT_MODULES = [ROOT / "deploy_ran" / "trt_compat.py", ROOT / "exporters" / "tensorrt.py"] + sorted(
    (ROOT / "deploy_ran" / "runners").glob("*trt*.py")
)
REMOVED_IN_11 = {
    ("BuilderFlag", "FP16"),
    ("BuilderFlag", "INT8"),
    ("BuilderFlag", "BF16"),
    ("BuilderFlag", "FP8"),
    ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"),
}


def _surfaces():
    return {v: load_surface(v)["module"] for v in SUPPORTED_VERSIONS}


def _trt_chains(tree: ast.AST) -> tuple[set[tuple[str, ...]], set[tuple[str, str]]]:
    """``trt.A`` / ``trt.A.B`` chains, and the (A, B) pairs read via ``getattr(trt.A, "B", ...)``."""
    chains, branched = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts = []
            cur = node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt":
                chains.add(tuple(reversed(parts))[:2])
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[0], ast.Attribute)
            and isinstance(node.args[0].value, ast.Name)
            and node.args[0].value.id == "trt"
        ):
            branched.add((node.args[0].attr, node.args[1].value))
    return chains, branched


def _exists(surface: dict, chain: tuple[str, ...]) -> bool:
    entry = surface.get(chain[0])
    if entry is None:
        return False
    if len(chain) == 1:
        return True
    return chain[1] in entry.get("members", []) or chain[1] in entry.get("attrs", {})


def test_the_tensorrt_modules_exist():
    assert (ROOT / "exporters" / "tensorrt.py").exists()
    assert any("trt" in p.name for p in TRT_MODULES)


@pytest.mark.parametrize("path", PROJECT_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_level_names_exist_in_every_version(path):
    surfaces = _surfaces()
    chains, branched = _trt_chains(ast.parse(path.read_text(encoding="utf-8")))
    for chain in chains:
        for version, surface in surfaces.items():
            assert _exists(surface, chain), (
                f"{path.name}: trt.{'.'.join(chain)} missing in TensorRT {version}"
            )
        assert chain not in REMOVED_IN_11
    for cls, member in branched:
        present = [v for v, s in surfaces.items() if _exists(s, (cls, member))]
        assert present, (
            f"{path.name}: getattr(trt.{cls}, {member!r}) exists in no supported version"
        )
        if len(present) == len(surfaces):
            # A branch on something every version has is dead code, except where the attribute
            # is a flag that may disappear in a later major version (STRONGLY_TYPED is kept in 11).
            assert (cls, member) in {("NetworkDefinitionCreationFlag", "STRONGLY_TYPED")}, (
                cls,
                member,
            )


def _trt_methods_everywhere() -> tuple[set[str], set[str]]:
    """Attribute names of TensorRT classes in all versions, and in at least one version."""
    per_version = []
    for surface in _surfaces().values():
        names = set()
        for entry in surface.values():
            names |= set(entry.get("attrs", {}))
        per_version.append(names)
    return set.intersection(*per_version), set.union(*per_version)


def _key(node: ast.AST) -> str | None:
    """``x`` or ``self.x`` as a string, for a tiny flow-insensitive "is a TensorRT object" analysis."""
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    ):
        return f"self.{node.attr}"
    return None


def _root_key(node: ast.AST) -> str | None:
    """The variable a call chain such as ``builder.create_network(...)`` starts from."""
    while isinstance(node, (ast.Call, ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute) and _key(node) and _key(node).startswith("self."):
            return _key(node)
        node = node.func if isinstance(node, ast.Call) else node.value
    return _key(node)


def trt_object_attributes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, attribute) for every attribute read on a value that came from TensorRT."""
    trt_vars = {"trt"}
    changed = True
    while changed:  # propagate "holds a TensorRT object" through assignments to a fixpoint
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if isinstance(node.value, ast.Call) and _root_key(node.value) in trt_vars:
                    for target in targets:
                        key = _key(target)
                        if key and key not in trt_vars:
                            trt_vars.add(key)
                            changed = True
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _key(node.value) in trt_vars - {"trt"}:
            found.append((node.lineno, node.attr))
    return found


@pytest.mark.parametrize("path", TRT_MODULES, ids=lambda p: p.name)
def test_object_attributes_exist_in_every_version(path):
    everywhere, _ = _trt_methods_everywhere()
    used = trt_object_attributes(ast.parse(path.read_text(encoding="utf-8")))
    for line, attr in used:
        assert attr in everywhere, f"{path.name}:{line}: .{attr} is not in every TensorRT version"


def test_object_attribute_analysis_catches_removed_calls():
    code = (
        "trt = import_tensorrt()\n"
        "builder = trt.Builder(logger)\n"
        "network = builder.create_network(0)\n"
        "engine = runtime.deserialize_cuda_engine(plan)\n"
        "runtime = trt.Runtime(logger)\n"
        "engine = runtime.deserialize_cuda_engine(plan)\n"
        "size = engine.device_memory_size\n"
    )
    used = dict((a, line) for line, a in trt_object_attributes(ast.parse(code)))
    assert "create_network" in used and "device_memory_size" in used
    everywhere, _ = _trt_methods_everywhere()
    assert "device_memory_size" not in everywhere  # gone in 11: the check above would fail


def test_removed_apis_are_not_used_anywhere():
    removed = {
        "int8_calibrator",
        "IInt8EntropyCalibrator2",
        "IInt8MinMaxCalibrator",
        "IInt8Calibrator",
        "platform_has_fast_fp16",
        "platform_has_fast_int8",
        "device_memory_size",
        "EXPLICIT_BATCH",
        "build_engine_with_config",
    }
    for path in PROJECT_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not used & removed, f"{path.name} uses {used & removed}"
        chains, _ = _trt_chains(tree)
        assert not any(c[:2] in REMOVED_IN_11 for c in chains if len(c) > 1)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_standin_mirrors_each_version(version):
    trt = build_module(version)
    has_fp16 = version.startswith("10.")
    assert hasattr(trt.BuilderFlag, "FP16") is has_fp16
    assert hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") is has_fp16
    assert hasattr(trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY") is (
        version != "10.3.0"
    )
    assert not hasattr(trt, "IInt8EntropyCalibrator2")
    config = trt.Builder(trt.Logger()).create_builder_config()
    with pytest.raises(AttributeError):
        config.int8_calibrator  # noqa: B018 - the attribute access is the test
    assert trt.__version__.endswith("+standin")


def test_standin_signatures_are_checked():
    def set_memory_pool_limit(self, pool_type, size):  # TensorRT calls them pool, pool_size
        pass

    with pytest.raises(StandinSignatureError, match="matches no TensorRT"):
        _check_method(
            "11.4.0.106", "IBuilderConfig", "set_memory_pool_limit", set_memory_pool_limit
        )
    with pytest.raises(StandinSignatureError, match="not a method"):
        _check_method("11.4.0.106", "ICudaEngine", "device_memory_size", lambda self: 0)


def test_host_memory_is_a_buffer():
    assert bytes(memoryview(IHostMemory(b"abc"))) == b"abc"
