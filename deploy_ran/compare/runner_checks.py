"""The checks a conversion runs before it hands out a file, made of runners and the comparator.

The conversion layer (:mod:`deploy_ran.convert`) sits below the runners, so it cannot build one; it
takes a :class:`deploy_ran.convert.Checks` object instead and calls it at the right moment (after
the file is written to its temporary name, before it is renamed into place). :class:`RunnerChecks`
is that object: eager PyTorch in a :class:`TorchRunner`, ONNX files in an :class:`OrtRunner`, the
comparison by :func:`deploy_ran.compare.run.compare`. Pass ``checks=RunnerChecks()`` to
:func:`deploy_ran.convert.convert` to get exactly what the CLI checks.

Precision as TensorRT computes it:

* INT8 Q/DQ graphs (calibration's comparison with FP32, sensitivity, ``exclude="auto"``) run in an
  :class:`OrtRunner` with ``qdq="float"``: fake-quantization in float, ONNX Runtime's integer
  fusions off (:data:`QDQ_ARITHMETIC` says so in every report);
* an FP16 file is compared twice: in ONNX Runtime (which upcasts FP16 ops it has no CPU kernel for)
  and, on ``strict_fp16_samples`` inputs, under float16-strict evaluation
  (:class:`deploy_ran.runners.reference_runner.ReferenceRunner`), which is where an FP16
  ``LogSoftmax`` gives −inf as it does in TensorRT. Both must pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from deploy_ran.compare.results import VerifyResult
from deploy_ran.compare.run import compare
from deploy_ran.errors import ParityError
from deploy_ran.onnx_graph import batch_to_run
from deploy_ran.runners.ort_runner import QDQ_ARITHMETIC, OrtRunner
from deploy_ran.runners.reference_runner import ReferenceRunner
from deploy_ran.runners.torch_runner import TorchRunner


def _random_inputs(shape: Sequence[int], count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, *shape), dtype=np.float32)


def _input_chw(runner: OrtRunner) -> tuple[int, ...]:
    shape = runner.input_spec[0].shape[1:]
    return tuple(int(d) for d in shape if d is not None)


class RunnerChecks:
    """Parity checks on runners: what ``export``, ``export --precision fp16`` and ``calibrate`` run.

    ``samples`` seeded random inputs (batches of up to ``batch_size``) are compared; a dynamic-batch
    file is run with a batch of 1 and one of 3, so both the batch-1 path and a batched path are
    exercised. ``threads`` caps ONNX Runtime's threads (``None`` = its default).
    ``strict_fp16_samples`` inputs (0 = off) are also run float16-strict for an FP16 file.
    """

    #: How :meth:`run_model` evaluates Q/DQ graphs (reported by calibration).
    qdq_arithmetic = QDQ_ARITHMETIC["float"]

    def __init__(
        self,
        *,
        samples: int = 4,
        seed: int = 0,
        threads: int | None = None,
        strict_fp16_samples: int = 2,
    ) -> None:
        self.samples = max(1, samples)
        self.seed = seed
        self.threads = threads
        self.strict_fp16_samples = max(0, strict_fp16_samples)

    def _compare(
        self,
        reference: TorchRunner | OrtRunner,
        candidate: OrtRunner,
        precision: str,
        what: str,
        hint: str,
    ) -> VerifyResult:
        fixed = candidate.fixed_batch
        count = candidate.batch_for(self.samples)
        data = _random_inputs(_input_chw(candidate), count, self.seed)
        # Batch sizes 1 then 3 on a dynamic file; the fixed batch on a static one.
        result = compare(
            reference,
            candidate,
            data[:1] if not fixed else data,
            precision=precision,
            batch_size=candidate.batch_for(1),
            input_source=f"seeded random normal (seed {self.seed})",
        )
        if not fixed and count > 1:
            more = compare(
                reference,
                candidate,
                data[1:],
                precision=precision,
                batch_size=3,
                input_source=f"seeded random normal (seed {self.seed})",
            )
            result.outputs += more.outputs
            result.checks += more.checks
            result.inputs["count"] += more.inputs["count"]
            result.inputs["batch_size"] = "1 and 3"
        if not result.passed:
            raise ParityError(f"{what}: {result.worst_failure()}.", hint=hint)
        return result

    def check_export(self, eager: nn.Module, onnx_file: Path) -> VerifyResult:
        """Eager PyTorch (FP32) vs ONNX Runtime on the exported file; FP32 criteria."""
        with TorchRunner(eager) as ref, OrtRunner(onnx_file, threads=self.threads) as cand:
            return self._compare(
                ref,
                cand,
                "fp32",
                "ONNX Runtime disagrees with eager PyTorch",
                "Nothing was written. Try --no-simplify to rule out the simplifier, or report it.",
            )

    def check_precision(self, reference: nn.Module | Path, candidate: Path) -> VerifyResult:
        """An FP16 (or other reduced-precision) file vs eager PyTorch or the FP32 ONNX file."""
        ref = (
            TorchRunner(reference)
            if isinstance(reference, nn.Module)
            else OrtRunner(reference, threads=self.threads)
        )
        hint = (
            "Nothing was written. Keep the offending ops in FP32 (keep_fp32 / --keep-fp32 OP, "
            "see `inspect`'s op list), or deploy the FP32/INT8 file."
        )
        with ref, OrtRunner(candidate, threads=self.threads) as cand:
            result = self._compare(
                ref, cand, cand.precision, f"The {cand.precision.upper()} model drifts from its reference", hint
            )
            if cand.precision == "fp16" and self.strict_fp16_samples:
                strict = self.strict_fp16(ref, candidate, fixed=cand.fixed_batch)
                result.extra["fp16_strict"] = strict.as_dict()
                if not strict.passed:
                    raise ParityError(
                        "The FP16 model fails under float16-strict evaluation (how a GPU computes "
                        f"FP16; ONNX Runtime on a CPU upcasts): {strict.worst_failure()}.",
                        hint=hint,
                    )
                result.notes.append(
                    f"float16-strict evaluation on {strict.inputs['count']} input(s): passed "
                    f"(max rel L2 {strict.max_rel_l2():.3g})"
                )
            return result

    def strict_fp16(
        self, reference: TorchRunner | OrtRunner, candidate: Path, *, fixed: int | None = None
    ) -> VerifyResult:
        """``candidate`` under float16-strict evaluation vs ``reference`` on a few seeded inputs."""
        with ReferenceRunner(candidate) as strict:
            count = batch_to_run(fixed, self.strict_fp16_samples)
            data = _random_inputs(_input_chw(strict), count, self.seed)
            return compare(
                reference,
                strict,
                data,
                precision="fp16",
                batch_size=count,
                input_source=f"seeded random normal (seed {self.seed})",
            )

    def run_model(
        self,
        model: onnx.ModelProto | Path,
        inputs: np.ndarray,
        batch_size: int,
        *,
        device: str = "cpu",
        allow_tf32: bool = False,
    ) -> dict[str, np.ndarray]:
        """Every output of ``model`` (a file or an in-memory graph) on ``inputs``, on ``device``
        (``cpu``, or ``cuda[:N]`` when calibration ran there; TF32 only with ``allow_tf32``).

        Q/DQ graphs are evaluated as TensorRT computes them (:attr:`qdq_arithmetic`).
        """
        with OrtRunner(
            model, device=device, threads=self.threads, qdq="float", allow_tf32=allow_tf32
        ) as runner:
            return runner.run_many(inputs, runner.batch_for(batch_size))
