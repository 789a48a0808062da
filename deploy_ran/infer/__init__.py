"""Run a model over many images: batched, resumable, never stopped by one bad file.

``run_inference(target, images, output)`` decodes and preprocesses images in worker processes
(``torch.utils.data.DataLoader``; PIL + numpy, no torchvision) while the runner works on the
previous batch, and appends one record per image to ``output`` (JSON Lines or CSV), flushed after
every batch: a killed run loses at most the batch in flight. ``resume=True`` reads what the output
already holds, skips those images and appends the rest, so the finished file is the one an
uninterrupted run writes. An image that cannot be read becomes a record with its error.

Each record is one image's prediction or its error (:mod:`deploy_ran.infer.records` shows the
fields); NaN or infinite logits become an error record (``model_errors``; ``InferResult.ok`` is
False).

One writer per output, and a resume only of what is ours:

* ``.NAME.lock`` beside the output is held (``flock``) for the whole run: a second run on the same
  output is refused at once (:class:`~deploy_ran.fileio.OutputLockedError`).
* ``NAME.producer.json`` beside the output records what produced it (artifact sha256, or model
  name + checkpoint sha256; precision, preprocessing, output name, top-k, labels sha256).
  ``resume`` checks it, and the whole existing file, *before* touching anything: a file of
  another model, of other settings, or with no producer record is refused and left as it was.
* Duplicate entries of a list are kept as given: each occurrence gets its own record.
* ``overwrite`` writes a new file under a temporary name and replaces the old output (and its
  producer record) only when the run has finished; a failed or interrupted run leaves the old one.
* A new output (and its producer record) is created when the first batch is written, so a model
  that fails on its first batch leaves no empty file; a full disk is a
  :class:`~deploy_ran.fileio.DiskFullError` (what was written stays resumable).

``infer --ray`` (:mod:`deploy_ran.infer.ray`) writes the same file through the same steps: the
request and runner checks (:func:`check_request`, :func:`check_runner`), the lock
(:func:`output_lock`), the producer and resume checks (:func:`plan_output`), per-image decoding
(:func:`decode_image`), records of one batch (:func:`predict_records`) and the writer
(:func:`write_batches`) are shared, so only where the work runs differs. Errors name library
parameters (``batch_size``, ``resume``) and carry them in ``param``; the CLI maps them to flags.

The modules, one job each: :mod:`~deploy_ran.infer.request` (refuse a bad request, the lock, the
runner and labels checks), :mod:`~deploy_ran.infer.dataset` (decoding workers, pinned batches,
prefetch), :mod:`~deploy_ran.infer.records` (what a record is, JSON Lines / CSV text),
:mod:`~deploy_ran.infer.producer` (the producer record), :mod:`~deploy_ran.infer.resume` (what an
output holds, what is left), :mod:`~deploy_ran.infer.predict` (a batch's records),
:mod:`~deploy_ran.infer.writer` (the one writer), :mod:`~deploy_ran.infer.result`
(:class:`InferResult`), :mod:`~deploy_ran.infer.run` (the local loop, :func:`run_inference`) and
:mod:`~deploy_ran.infer.ray` (:func:`~deploy_ran.infer.ray.run_inference_ray`; imported only when
asked for, Ray being optional).
"""

from deploy_ran.infer.predict import InferenceError
from deploy_ran.infer.producer import producer_path
from deploy_ran.infer.records import NONFINITE_ERROR
from deploy_ran.infer.request import read_labels
from deploy_ran.infer.result import InferResult
from deploy_ran.infer.run import run_inference

__all__ = [
    "NONFINITE_ERROR",
    "InferResult",
    "InferenceError",
    "producer_path",
    "read_labels",
    "run_inference",
]
