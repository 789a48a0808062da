"""Triton Inference Server model repositories from the toolkit's files (``triton-repo``).

>>> from exporters.triton import RepoOptions, write_repository
>>> write_repository(["ran92.onnx"], "repo", RepoOptions(kind="gpu"))   # doctest: +SKIP

Modules: ``artifact`` (what an .onnx / .plan file declares), ``config`` (``config.pbtxt`` built
through Triton's own protobuf schema, checked against the file), ``preprocess_model`` (the
Python-backend image model for ``--preprocess``), ``repository`` (the folder layout, written
atomically). ``tritonclient`` (the ``triton`` extra) is needed for the schema only.
"""

from exporters.triton.artifact import Artifact, TensorIO, TritonRepoError, read_artifact
from exporters.triton.config import (
    DEFAULT_MAX_BATCH,
    DEFAULT_QUEUE_DELAY_US,
    METADATA_PARAMETER,
    RepoOptions,
    parse,
)
from exporters.triton.repository import RepoResult, default_name, write_repository

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_QUEUE_DELAY_US",
    "METADATA_PARAMETER",
    "Artifact",
    "RepoOptions",
    "RepoResult",
    "TensorIO",
    "TritonRepoError",
    "default_name",
    "parse",
    "read_artifact",
    "write_repository",
]
