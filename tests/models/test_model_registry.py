"""The registry's front door: names, specs, options and the figures each spec promises."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deploy_ran.errors import DeployRanError, UnknownModelError
from deploy_ran.models import count_macs, count_params, create_model, get_spec, list_models
from tests.paths import ROOT

# The issue's table: name -> (params target, tolerance, MACs target, tolerance).
IMAGENET_TARGETS = {
    "ran56": (31.8e6, 0.01, 6.27e9, 0.01),
    "ran92": (52.5e6, 0.01, 10.53e9, 0.01),
    "ran56_next": (31.3e6, 0.03, 6.42e9, 0.03),
}
# The paper's CIFAR parameter counts, where it gives one (within 10%).
CIFAR_PAPER_PARAMS = {"ran92_cifar": 1.9e6, "ran236_cifar": 5.1e6, "ran452_cifar": 8.6e6}
EXPECTED_NAMES = {
    "ran56",
    "ran92",
    "ran56_next",
    "ran56_cifar",
    "ran92_cifar",
    "ran128_cifar",
    "ran164_cifar",
    "ran236_cifar",
    "ran452_cifar",
}


def test_every_issue_model_is_registered():
    assert EXPECTED_NAMES <= set(list_models())


def test_list_models_filters_and_sorts_naturally():
    cifar = list_models("ran*_cifar")
    assert cifar[:3] == ["ran56_cifar", "ran92_cifar", "ran128_cifar"]
    assert all(n.endswith("_cifar") for n in cifar)
    assert list_models("nothing*") == []


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownModelError) as info:
        get_spec("ran29")
    assert "ran92" in str(info.value)
    with pytest.raises(UnknownModelError) as info:
        create_model("ran_56")
    assert "ran56" in info.value.hint


def test_unknown_option_lists_accepted_ones():
    with pytest.raises(DeployRanError) as info:
        create_model("ran56_cifar", dropout=0.5)
    assert "attention" in info.value.hint


def test_bad_option_value_lists_choices():
    with pytest.raises(DeployRanError) as info:
        create_model("ran56_cifar", attention="softmax")
    assert "'spatial'" in info.value.hint


def test_too_small_image_is_rejected():
    with pytest.raises(DeployRanError, match="at least 32"):
        create_model("ran56", image_size=16)


@pytest.mark.parametrize("name", list_models())
def test_spec_figures_match_the_built_model(name):
    spec = get_spec(name)
    model = create_model(name)
    assert count_params(model) == spec.params
    assert count_macs(model, spec.image_size) == spec.macs
    assert model.spec is spec
    assert not model.training


@pytest.mark.parametrize("name", sorted(IMAGENET_TARGETS))
def test_imagenet_models_hit_the_table(name):
    params, p_tol, macs, m_tol = IMAGENET_TARGETS[name]
    spec = get_spec(name)
    assert abs(spec.params / params - 1) <= p_tol
    assert abs(spec.macs / macs - 1) <= m_tol


@pytest.mark.parametrize("name", sorted(CIFAR_PAPER_PARAMS))
def test_cifar_models_within_ten_percent_of_paper(name):
    spec = get_spec(name)
    assert spec.paper_params == CIFAR_PAPER_PARAMS[name] / 1e6
    assert abs(spec.params / CIFAR_PAPER_PARAMS[name] - 1) <= 0.10


def test_cifar_depths_follow_36m_plus_20():
    """The paper's depth formula for p, t = 1, 2: each module adds 12 layers along the trunk."""
    for depth in (56, 92, 128, 164, 236):
        model = create_model(f"ran{depth}_cifar")
        modules = sum(len(stage.attention) for stage in model.stages)
        assert 36 * (modules // 3) + 20 == depth


def test_num_classes_and_image_size_override():
    model = create_model("ran56_cifar", num_classes=7, image_size=40)
    assert model.fc.out_features == 7
    assert model.image_size == (40, 40)


def test_preprocessing_scales_resize_with_crop():
    pre = get_spec("ran92").preprocessing(320)
    assert pre["crop_size"] == 320 and pre["resize_size"] == round(320 * 256 / 224)
    assert pre["mean"] == [0.485, 0.456, 0.406]


def test_weights_without_checkpoint_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = create_model("ran56_cifar")
    second = create_model("ran56_cifar", image_size=40)  # same parameters, other resize sizes
    assert torch.equal(torch.rand(1), expected_next)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), name


# --- How the registry is filled: timm's way, no circle, no ONNX ---------------------------------
MODELS_DIR = ROOT / "deploy_ran" / "models"


def _run_python(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (sys.modules starts empty) and return its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_registry_module_alone_imports_no_model_module():
    # Importing a submodule runs the package's __init__ (which imports every family on purpose),
    # so the package is stubbed here: what loads is the registry and what it imports itself.
    seen = _run_python(
        "import json, sys, types\n"
        "import deploy_ran\n"
        "pkg = types.ModuleType('deploy_ran.models')\n"
        f"pkg.__path__ = [{str(MODELS_DIR)!r}]\n"
        "sys.modules['deploy_ran.models'] = pkg\n"
        "import deploy_ran.models.registry as r\n"
        "mods = sorted(m for m in sys.modules if m.startswith('deploy_ran.models.'))\n"
        "print(json.dumps({'modules': mods, 'registered': r.list_models()}))\n"
    )
    assert seen["modules"] == ["deploy_ran.models.registry"]
    assert seen["registered"] == []  # names come from the model modules, not the registry


def test_models_package_sees_every_model_without_onnx():
    seen = _run_python(
        "import json, sys\n"
        "from deploy_ran.models import list_models\n"
        "heavy = [m for m in ('onnx', 'onnxruntime', 'deploy_ran.artifacts') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'names': list_models()}))\n"
    )
    assert seen["heavy"] == []
    assert seen["names"] == list_models()
    families = {get_spec(n).family for n in seen["names"]}
    assert {"RAN", "RAN-CIFAR", "ABN", "ABN-CIFAR", "A&R"} <= families


def _imports_within_models(path: Path) -> set[str]:
    """Modules of deploy_ran.models that ``path`` imports (at any depth, lazy imports included)."""
    package = "deploy_ran.models"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(package)}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package):
            for alias in node.names:  # `from deploy_ran.models import ran` imports a module
                sub = f"{node.module}.{alias.name}"
                is_module = (MODELS_DIR / f"{alias.name}.py").exists()
                found.add(sub if node.module == package and is_module else node.module)
    return found


def test_models_package_has_no_import_circle():
    def name_of(path: Path) -> str:
        stem = "" if path.stem == "__init__" else f".{path.stem}"
        return f"deploy_ran.models{stem}"

    graph = {name_of(p): _imports_within_models(p) for p in MODELS_DIR.glob("*.py")}
    assert graph["deploy_ran.models.registry"] <= {"deploy_ran.models.checkpoint"}

    def cycle_from(start: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph.get(start, ())):
            if nxt in path:
                return (*path[path.index(nxt) :], nxt)
            found = cycle_from(nxt, (*path, nxt))
            if found:
                return found
        return None

    for module in graph:
        assert cycle_from(module, (module,)) is None, (
            f"import circle: {cycle_from(module, (module,))}"
        )


def test_models_import_nothing_above_them():
    # The ground floor below the models: errors, and the regular-file reader (which imports errors).
    allowed_base = {"deploy_ran.errors", "deploy_ran.reading"}
    for path in MODELS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                top = name.split(".")[0]
                assert top not in {"onnx", "onnxruntime", "tensorrt", "exporters", "calibration"}, (
                    f"{path.name} imports {name}"
                )
                if top == "deploy_ran" and not name.startswith("deploy_ran.models"):
                    assert name in allowed_base, f"{path.name} imports {name}"
