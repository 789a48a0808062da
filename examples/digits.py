"""A real accuracy check for FP16 and INT8: a Residual Attention Network trained on digits.

Random weights say little about INT8 (a random network's logits barely depend on its input), so
this example trains a small RAN on a real, bundled data set and measures what precision costs:

    python examples/digits.py data                     # digits.npz: train/test split, preprocessed
    python examples/digits.py train                    # digits_ran56_cifar.pt (a few CPU minutes)
    python examples/digits.py evaluate                 # FP32 / FP16 / INT8 accuracy table

``data`` writes scikit-learn's 1,797 handwritten digits (8×8, bundled with scikit-learn, no
download) as a seeded 75/25 train/test split, upscaled bilinearly to 32×32, copied to three
channels and normalised with the model spec's mean/std: exactly the preprocessed NCHW float32 that
``calibrate --calib-data digits.npz:x_train`` takes. ``train`` trains a CIFAR-family RAN
(``ran56_cifar`` by default) on the train split and saves a checkpoint that ``export
--checkpoint`` loads. ``evaluate`` exports FP32, converts to FP16, calibrates INT8 on the train
split with each method and reports test accuracy and top-1 agreement with FP32, all in ONNX
Runtime on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a clone
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import typer  # noqa: E402

DEFAULT_MODEL = "ran56_cifar"
DEFAULT_SIZE = 32
RECIPE_VERSION = 1
METHODS = ("percentile", "minmax", "entropy")
AUTO_TARGET_AGREEMENT = 0.99


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; its hash names the cached checkpoint."""

    model: str = DEFAULT_MODEL
    image_size: int = DEFAULT_SIZE
    epochs: int = 3
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    test_fraction: float = 0.25
    version: int = RECIPE_VERSION

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# -- data --------------------------------------------------------------------------------------


def make_digits(
    model: str = DEFAULT_MODEL,
    image_size: int = DEFAULT_SIZE,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> dict[str, np.ndarray]:
    """scikit-learn's digits as preprocessed NCHW float32 train/test arrays for ``model``.

    Pixels (0–16) are scaled to [0, 1], resized bilinearly to ``image_size``, repeated to three
    channels and normalised with the spec's mean/std, like any image the spec preprocesses.
    """
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from deploy_ran.models import get_spec

    spec = get_spec(model)
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    resized = np.stack(
        [
            np.asarray(
                Image.fromarray(img).resize((image_size, image_size), Image.Resampling.BILINEAR),
                dtype=np.float32,
            )
            for img in images
        ]
    ).clip(0.0, 1.0)
    rgb = np.repeat(resized[:, None], 3, axis=1)
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    x = ((rgb - mean) / std).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return {
        "x_train": np.ascontiguousarray(x_train),
        "y_train": y_train,
        "x_test": np.ascontiguousarray(x_test),
        "y_test": y_test,
    }


def write_digits(path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`make_digits` as an ``.npz`` (atomically)."""
    from deploy_ran.fileio import atomic_path

    arrays = make_digits(**kwargs)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def load_digits_npz(path: str | Path) -> dict[str, np.ndarray]:
    from deploy_ran.errors import DeployRanError

    path = Path(path)
    if not path.is_file():
        raise DeployRanError(
            f"{path} does not exist.", hint="Write it with `python examples/digits.py data`."
        )
    with np.load(path, allow_pickle=False) as npz:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.keys())
        if missing:
            raise DeployRanError(
                f"{path} lacks {', '.join(sorted(missing))}.",
                hint="Write it with `python examples/digits.py data`.",
            )
        return {k: npz[k] for k in npz.keys()}


# -- training ----------------------------------------------------------------------------------


@dataclass
class TrainResult:
    path: Path
    recipe: Recipe
    test_accuracy: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    recipe: Recipe,
    output: str | Path,
    data: dict[str, np.ndarray] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train ``recipe.model`` on the digits train split; save a checkpoint ``export`` loads."""
    import torch
    import torch.nn.functional as F

    from deploy_ran.fileio import atomic_path, check_writable
    from deploy_ran.models import create_model

    check_writable(output)
    data = data or make_digits(recipe.model, recipe.image_size, recipe.seed, recipe.test_fraction)
    torch.manual_seed(recipe.seed)
    model = create_model(recipe.model, image_size=recipe.image_size, num_classes=10)
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.from_numpy(data["x_train"]).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(data["y_train"])
    steps_per_epoch = (len(x) + recipe.batch - 1) // recipe.batch
    total = steps_per_epoch * recipe.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=total, pct_start=0.25
    )
    gen = torch.Generator().manual_seed(recipe.seed)
    started = time.perf_counter()
    history = []
    step = 0
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(x), generator=gen)
        running = 0.0
        for start in range(0, len(x), recipe.batch):
            idx = order[start : start + recipe.batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running += float(loss.detach()) * len(idx)
            if progress:
                progress(step, total, float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": running / len(x)})
    model.eval()
    with torch.no_grad():
        logits = torch.cat(
            [
                model(torch.from_numpy(data["x_test"][i : i + 256]))
                for i in range(0, len(data["x_test"]), 256)
            ]
        )
    accuracy = float((logits.argmax(1).numpy() == data["y_test"]).mean())
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(output, suffix=".pt") as tmp:
        torch.save({"state_dict": state, "model": recipe.model, "recipe": asdict(recipe)}, str(tmp))
    return TrainResult(Path(output), recipe, accuracy, time.perf_counter() - started, history)


def cache_dir() -> Path:
    """Where tests and ``evaluate`` keep trained checkpoints (outside the repository)."""
    base = os.environ.get("DEPLOY_RAN_CACHE") or Path.home() / ".cache" / "deploy-ran"
    return Path(base) / "digits"


def cached_checkpoint(recipe: Recipe, progress=None) -> tuple[Path, bool]:
    """The checkpoint for ``recipe`` from the cache, trained first if missing: (path, trained)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe.model}-{recipe.image_size}px-{recipe.digest()}.pt"
    if path.is_file():
        return path, False
    train(recipe, path, progress=progress)
    return path, True


# -- evaluation --------------------------------------------------------------------------------


@dataclass
class PrecisionRow:
    precision: str  # "FP32", "FP16", "INT8 entropy", ...
    path: str
    accuracy: float
    agreement: float  # top-1 agreement with FP32
    seconds: float = 0.0
    kept_fp32: list[str] = field(default_factory=list)  # groups --exclude auto kept in FP32
    #: Paired comparison with FP32 on the same test images (deploy_ran.compare.paired): changed
    #: predictions, exact McNemar p, 95 % interval on the accuracy difference.
    paired: dict[str, Any] | None = None
    #: INT8 coverage of the file (exporters.coverage), None for FP32/FP16 rows.
    coverage: dict[str, Any] | None = None


@dataclass(frozen=True)
class Int8Variant:
    """One INT8 file of the table: calibration method, Q/DQ placement, float part, --exclude auto."""

    method: str
    placement: str = "trt"
    float_precision: str = "fp16"
    auto: bool = False

    def label(self) -> str:
        text = f"INT8 {self.method}" + (" + exclude auto" if self.auto else "")
        extra = [self.placement] if self.placement != "trt" else []
        extra += (
            [f"{self.float_precision.upper()} float part"] if self.float_precision != "fp16" else []
        )
        return text + (", " + ", ".join(extra) if extra else "")

    def stem(self) -> str:
        return (
            f"digits.int8-{self.method}{'-auto' if self.auto else ''}-{self.placement}"
            f"-{self.float_precision}"
        )


#: The table's rows: every method with the defaults (trt placement, FP16 float part), and the
#: default method with each other placement x float part, as the README's digits table.
DEFAULT_VARIANTS = (
    *(Int8Variant(m) for m in METHODS),
    Int8Variant("percentile", "trt", "fp32"),
    Int8Variant("percentile", "conservative", "fp16"),
    Int8Variant("percentile", "conservative", "fp32"),
)


def _predict(path: str | Path, x: np.ndarray, batch: int = 256) -> np.ndarray:
    from deploy_ran.runners.ort_runner import OrtRunner

    with OrtRunner(path) as runner:
        out = runner.run_many(x, batch)
    return out[runner.output_names[0]]


def evaluate_precisions(
    checkpoint: str | Path,
    data: dict[str, np.ndarray] | str | Path,
    workdir: str | Path,
    *,
    model: str = DEFAULT_MODEL,
    image_size: int | None = None,
    variants: Sequence[Int8Variant] = DEFAULT_VARIANTS,
    num_images: int = 512,
    calibration_key: str = "x_train",
    progress: Callable[[str], None] | None = None,
) -> list[PrecisionRow]:
    """Export FP32, convert to FP16, calibrate each INT8 variant; test accuracy, agreement, and
    the paired comparison with FP32 (changed predictions, exact McNemar p, 95 % interval).

    A variant with ``auto`` keeps the most sensitive groups in FP32 until top-1 agreement with
    FP32 on calibration images reaches ``AUTO_TARGET_AGREEMENT`` (``--exclude auto``).
    """
    from calibration.quantize import cache_path_for
    from deploy_ran.compare.paired import compare_paired
    from deploy_ran.compare.runner_checks import RunnerChecks
    from deploy_ran.convert import CalibrationConfig, ExportConfig, convert
    from exporters.coverage import int8_coverage

    say = progress or (lambda _m: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not isinstance(data, dict):
        npz_path = Path(data)
        arrays = load_digits_npz(npz_path)
    else:
        arrays = data
        npz_path = workdir / "digits.npz"
        with open(npz_path, "wb") as fh:
            np.savez(fh, **arrays)
    size = image_size or int(arrays["x_test"].shape[-1])
    x_test, y_test = arrays["x_test"], arrays["y_test"]

    rows = []
    say("export FP32")
    t = time.perf_counter()
    checks = RunnerChecks()
    fp32 = convert(
        model,
        "fp32",
        output=workdir / "digits.onnx",
        export=ExportConfig(checkpoint=checkpoint, image_size=size),
        checks=checks,
    )
    ref = _predict(fp32.path, x_test).argmax(1)
    rows.append(
        PrecisionRow(
            "FP32", str(fp32.path), float((ref == y_test).mean()), 1.0, time.perf_counter() - t
        )
    )

    def row(label: str, path: Path, seconds: float, kept: Sequence[str] = ()) -> PrecisionRow:
        import onnx

        pred = _predict(path, x_test).argmax(1)
        accuracy, agree = float((pred == y_test).mean()), float((pred == ref).mean())
        paired = compare_paired(ref, pred, y_test).as_dict()
        coverage = int8_coverage(onnx.load(str(path))).as_dict() if "INT8" in label else None
        return PrecisionRow(
            label, str(path), accuracy, agree, seconds, list(kept), paired, coverage
        )

    say("convert FP16")
    t = time.perf_counter()
    fp16 = convert(fp32.path, "fp16", output=workdir / "digits.fp16.onnx", checks=checks)
    rows.append(row("FP16", fp16.path, time.perf_counter() - t))
    for variant in variants:
        label, name = variant.label(), variant.stem()
        say(f"calibrate {label}")
        t = time.perf_counter()
        result = convert(
            fp32.path,
            "int8",
            output=workdir / f"{name}.onnx",
            calibration=CalibrationConfig(
                data=f"{npz_path}:{calibration_key}",
                method=variant.method,
                num_images=num_images,
                exclude=("auto",) if variant.auto else (),
                target_agreement=AUTO_TARGET_AGREEMENT if variant.auto else None,
                # The ranges depend on neither placement, float part nor exclusions: one cache
                # per method serves every variant.
                cache_path=cache_path_for(workdir / f"digits.int8-{variant.method}.onnx"),
                eval_images=200 if variant.auto else 64,
                float_precision=variant.float_precision,
                placement=variant.placement,
                require_pass=False,  # measured here, whatever verify's criteria say
            ),
            checks=checks,
        ).int8
        assert result is not None
        auto = variant.auto
        kept = result.sensitivity.excluded if auto and result.sensitivity is not None else []
        rows.append(row(label, result.path, time.perf_counter() - t, kept))
    return rows


# -- command line ------------------------------------------------------------------------------

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])


@app.command("data")
def data_cmd(
    output: Annotated[Path, typer.Option("--output", "-o")] = Path("digits.npz"),
    model: Annotated[str, typer.Option(help="Model whose spec preprocesses.")] = DEFAULT_MODEL,
    size: Annotated[int, typer.Option(help="Image size (digits are upscaled).")] = DEFAULT_SIZE,
    seed: int = 0,
) -> None:
    """Write the digits train/test split as a preprocessed .npz."""
    path = write_digits(output, model=model, image_size=size, seed=seed)
    with np.load(path) as npz:
        shapes = {k: npz[k].shape for k in npz.keys()}
    typer.echo(f"wrote {path}: " + ", ".join(f"{k} {v}" for k, v in shapes.items()))


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Option(help="From `data`.")] = Path("digits.npz"),
    model: str = DEFAULT_MODEL,
    epochs: int = Recipe.epochs,
    batch: int = Recipe.batch,
    lr: float = Recipe.lr,
    seed: int = 0,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Train a CIFAR-family RAN on the digits train split (a few CPU minutes)."""
    from rich.progress import Progress

    arrays = load_digits_npz(data)
    recipe = Recipe(
        model=model,
        image_size=int(arrays["x_train"].shape[-1]),
        epochs=epochs,
        batch=batch,
        lr=lr,
        seed=seed,
    )
    output = output or Path(f"digits_{model}.pt")
    with Progress() as bar:
        task = bar.add_task(f"training {model}", total=None)
        result = train(
            recipe,
            output,
            data=arrays,
            progress=lambda s, t, loss: bar.update(
                task, completed=s, total=t, description=f"training {model} (loss {loss:.3f})"
            ),
        )
    typer.echo(
        f"wrote {result.path}: test accuracy {result.test_accuracy:.2%} after {epochs} epoch(s) "
        f"in {result.seconds:.0f} s"
    )


@app.command("evaluate")
def evaluate_cmd(
    checkpoint: Annotated[Path, typer.Option(help="From `train`.")] = Path(
        f"digits_{DEFAULT_MODEL}.pt"
    ),
    data: Annotated[Path, typer.Option(help="From `data`.")] = Path("digits.npz"),
    model: str = DEFAULT_MODEL,
    workdir: Path = Path("digits_out"),
    num_images: int = 512,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """FP32 / FP16 / INT8 (entropy, minmax, percentile) test accuracy in ONNX Runtime."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    with console.status("evaluating…") as status:
        rows = evaluate_precisions(
            checkpoint,
            data,
            workdir,
            model=model,
            num_images=num_images,
            progress=lambda m: status.update(m + "…"),
        )
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table(title=f"{model} on digits (test split, ONNX Runtime CPU)", title_justify="left")
    columns = (
        "precision", "accuracy", "Δ vs FP32 (points)", "95 % interval", "changed", "McNemar p",
        "INT8 / FP16 / FP32 MiB per image",
    )  # fmt: skip
    for col in (*columns, "kept in FP32"):
        table.add_column(col, justify="left" if col in ("precision", "kept in FP32") else "right")
    base = rows[0].accuracy
    for r in rows:
        p, cov = r.paired, r.coverage
        table.add_row(
            r.precision,
            f"{r.accuracy:.2%}",
            f"{(r.accuracy - base) * 100:+.2f}",
            f"{p['ci_low'] * 100:+.2f} … {p['ci_high'] * 100:+.2f}" if p else "",
            f"{p['changed']} ({p['lost']} lost, {p['gained']} gained)" if p else "",
            f"{p['p_value']:.3f}" if p else "",
            " / ".join(
                f"{cov['activation_bytes_per_image'][k] / 2**20:.2f}"
                for k in ("int8", "fp16", "fp32")
            )
            if cov
            else "",
            ", ".join(r.kept_fp32) or ("nothing" if "auto" in r.precision else ""),
        )
    console.print(table)


if __name__ == "__main__":
    from deploy_ran.errors import DeployRanError

    try:
        app()
    except DeployRanError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None
