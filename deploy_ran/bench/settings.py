"""What to benchmark and how: one typed, checked settings object instead of twenty arguments.

The checks that need no file or model (positive batch sizes, a timing length, a known backend)
run when the settings are made, so a wrong value fails before anything is exported or measured;
their errors carry the parameter's name in ``DeployRanError.param``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_ran.device import Device
from deploy_ran.errors import DeployRanError
from deploy_ran.runners import list_backends
from deploy_ran.target import is_url


@dataclass(frozen=True)
class BenchSettings:
    """Settings of one benchmark run (see :mod:`deploy_ran.bench` for the method).

    - ``model``: the target: a registered model name (its PyTorch rows are built from it, +
      ``checkpoint``, ``options``, ``image_size``), or an ``.onnx`` file, an engine or a served
      URL, measured as it is (see :mod:`deploy_ran.bench.targets`).
    - ``backends``: registered backend kinds; ``None``: for a model name ``torch`` and ``ort``,
      plus those of the artifacts; for a file or URL, the backends of the target and artifacts.
    - ``artifacts``: existing ONNX files (any precision; their metadata says which), engines and
      served ``triton://`` URLs.
      With a model name, ``ort`` among the backends and no FP32 ONNX among them, a matching
      ``NAME.onnx`` in ``workdir`` is reused, else exported there (a temporary folder when
      ``None``).
    - ``batch_sizes``: measured in increasing order, duplicates dropped.
    - ``warmup``: seconds of untimed runs per row (at least 2 runs). ``duration``: timed seconds
      per row, unless ``iterations`` (timed runs per row) is given.
    - ``device``: ``cpu`` or ``cuda[:N]``; ``None``: the CPU for PyTorch and ONNX Runtime rows, CUDA
      for engine rows (an engine never runs on a CPU; ``device="cpu"`` skips its rows). ``copies``: on a GPU, include host↔device copies.
      ``cuda_graphs``: capture CUDA graphs where the backend can (GPU only).
    - ``interleave``: the backends of one batch size take turns run by run.
    - ``torch_precisions``: one PyTorch row per precision (``fp32``, ``fp16``, ``autocast``).
    - ``torch_modes``: PyTorch rows per precision: ``eager`` and/or ``compile`` (``torch.compile``,
      compiled during the warm-up, compile time reported apart in the row). The eager FP32 row
      is the ``speedup_vs_torch_fp32`` baseline; without one, that column stays empty.
    - ``torch_layouts``: PyTorch rows per precision × mode, one per layout: ``default`` (the
      runner's per-device, per-precision default: channels_last except FP32 on CUDA, see
      ``CHANNELS_LAST_DEFAULTS``), ``nchw``, ``channels_last``. Layouts that come to the same one
      for a precision give one row. The first layout's eager FP32 row is the FP32 baseline.
    - ``ort_cuda_options``: ONNX Runtime CUDA provider options over the per-precision defaults
      (``prefer_nhwc``, ``cudnn_conv_algo_search``, ``cudnn_conv_use_max_workspace``).
    - ``allow_tf32``: let FP32 convolutions run in TF32 on CUDA (ONNX Runtime's ``use_tf32``,
      PyTorch's cuDNN flag); off by default so FP32 rows are FP32. Recorded per row (``tf32``).
    - ``loader``: also measure one ``infer`` loader worker's images/s on 12-megapixel JPEGs at
      this benchmark's image size (full and reduced-size decoding, see
      :mod:`deploy_ran.bench.loader`), reported beside the backends' images/s.
    - ``data``: labelled images (a ``VAL/<class>/*`` folder, a ``path,label`` CSV/TSV, an
      ``.npz``; see :mod:`deploy_ran.evaluate.data`) to measure each row's top-1 on, and its
      difference from eager PyTorch FP32 (:mod:`deploy_ran.bench.accuracy`); ``labels``: class
      names in index order; ``data_images``: only the first N samples.
    - ``threads``: ``None`` gives every CPU backend the idle cores at the start
      (:mod:`deploy_ran.bench.machine`).
    - ``output``: a folder (file names from the environment) or ``FILE.json``; ``None`` saves
      nothing. ``plot``: also write the PNG.
    """

    model: str
    backends: tuple[str, ...] | None = None
    artifacts: tuple[Path | str, ...] = ()
    batch_sizes: tuple[int, ...] = (1,)
    warmup: float = 1.0
    duration: float | None = 5.0
    iterations: int | None = None
    device: str | None = None
    copies: bool = True
    cuda_graphs: bool = False
    interleave: bool = False
    threads: int | None = None
    torch_precisions: tuple[str, ...] = ("fp32",)
    torch_modes: tuple[str, ...] = ("eager",)
    torch_layouts: tuple[str, ...] = ("default",)
    ort_cuda_options: dict[str, str] | None = field(default=None, hash=False)
    allow_tf32: bool = False
    loader: bool = False
    image_size: int | None = None
    checkpoint: Path | None = None
    options: dict[str, Any] | None = field(default=None, hash=False)
    workdir: Path | None = None
    output: Path | None = None
    plot: bool = True
    data: str | None = None
    labels: Path | None = None
    data_images: int | None = None

    def __post_init__(self) -> None:
        # Accept any sequence / str path from callers; store the normalised, typed form.
        set_ = object.__setattr__
        if self.device is not None:  # checked once; kept as text for reports
            set_(self, "device", str(Device.parse(self.device)))
        set_(self, "batch_sizes", _batch_sizes(self.batch_sizes))
        set_(self, "artifacts", tuple(a if is_url(a) else Path(a) for a in self.artifacts))
        set_(self, "torch_precisions", tuple(self.torch_precisions))
        set_(self, "torch_modes", _torch_modes(self.torch_modes))
        set_(self, "torch_layouts", _torch_layouts(self.torch_layouts))
        if self.data is not None:
            set_(self, "data", str(self.data))
        if self.data is None and (self.labels is not None or self.data_images is not None):
            raise DeployRanError(
                "labels and data_images apply to the accuracy measured on data.",
                hint="Give data (labelled images), or drop labels/data_images.",
                param="data",
            )
        for name in ("checkpoint", "workdir", "output", "labels"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, Path(value))
        if self.backends is not None:
            set_(self, "backends", _backends(self.backends))
        if self.iterations is not None and self.iterations < 1:
            raise DeployRanError(
                f"iterations must be ≥ 1, got {self.iterations}.",
                hint="Use e.g. iterations=20.",
                param="iterations",
            )
        if self.iterations is None and (self.duration is None or self.duration <= 0):
            raise DeployRanError(
                "Give duration (seconds, > 0) or iterations (runs).",
                hint="Use e.g. duration=5.",
                param="duration",
            )
        if self.warmup < 0:
            raise DeployRanError(
                f"warmup must be ≥ 0 s, got {self.warmup}.",
                hint="Use e.g. warmup=1.",
                param="warmup",
            )
        if self.cuda_graphs and not self.on_gpu:
            raise DeployRanError(
                "CUDA graphs need a GPU.",
                hint="Set device='cuda', or cuda_graphs=False.",
                param="cuda_graphs",
            )

    @property
    def on_gpu(self) -> bool:
        return Device.parse(self.device).is_cuda  # None: the CPU (engines still run on CUDA)

    @property
    def copies_included(self) -> bool:
        """Whether the measured time includes host↔device copies (always, on a CPU)."""
        return self.copies or not self.on_gpu


def _batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    try:
        sizes = sorted({int(b) for b in batch_sizes})
    except (TypeError, ValueError):
        sizes = []
    if not sizes or sizes[0] < 1:
        raise DeployRanError(
            f"batch_sizes must be positive integers, got {list(batch_sizes)}.",
            hint="Use e.g. batch_sizes=(1, 8, 32).",
            param="batch_sizes",
        )
    return tuple(sizes)


def _choices(
    values: Sequence[str] | str, allowed: Sequence[str], what: str, param: str, example: str
) -> tuple[str, ...]:
    """Names from ``allowed`` (case-insensitive, duplicates dropped, order kept); a lone string
    is one name, not its letters. Anything else is refused, naming ``param``."""
    if isinstance(values, str):
        values = (values,)
    names = tuple(dict.fromkeys(str(v).strip().lower() for v in values if str(v).strip()))
    unknown = sorted(set(names) - set(allowed))
    if unknown or not names:
        raise DeployRanError(
            f"Unknown {what}(s) {', '.join(unknown) or '(none given)'}.",
            hint=f"Choose from: {', '.join(allowed)} (e.g. {param}={example}).",
            param=param,
        )
    return names


def _backends(backends: Sequence[str]) -> tuple[str, ...]:
    return _choices(backends, list_backends(), "backend", "backends", "('torch', 'ort')")


def _torch_modes(modes: Sequence[str]) -> tuple[str, ...]:
    from deploy_ran.runners.torch_runner import TORCH_MODES

    return _choices(modes, TORCH_MODES, "PyTorch mode", "torch_modes", "('eager', 'compile')")


def _torch_layouts(layouts: Sequence[str]) -> tuple[str, ...]:
    from deploy_ran.runners.torch_runner import TORCH_LAYOUTS

    return _choices(
        layouts, TORCH_LAYOUTS, "PyTorch layout", "torch_layouts", "('nchw', 'channels_last')"
    )
