"""Write a Triton model repository from artifact files, never leaving half a model behind.

Layout (Triton's, also read by KServe's Triton runtime)::

    repo/<name>/config.pbtxt
    repo/<name>/labels.txt                 with --labels
    repo/<name>/1/model.onnx               (a folder model.onnx/ when weights are external)
    repo/<name>/1/model.plan
    repo/<name>_preprocess/{config.pbtxt, 1/model.py}     with --preprocess
    repo/<name>_ensemble/{config.pbtxt, 1/}               with --preprocess

A new model folder is assembled under a hidden temporary name inside ``repo/`` and renamed into
place when complete, so a Triton server polling the repository never sees it half written. An
existing model folder is refused unless ``force``; then only the files this writer produces are
replaced (each atomically) and nothing else in the folder is touched or deleted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy_ran.fileio import atomic_path, clean_stale_temps, clean_stale_temps_in, owner_tag
from deploy_ran.reading import read_utf8_lines
from exporters.triton import config as configs
from exporters.triton.artifact import Artifact, TritonRepoError, read_artifact
from exporters.triton.preprocess_model import model_source

# What a file in a model folder is made of: bytes to write, or a file to copy.
Content = bytes | Path


@dataclass
class ModelFolder:
    name: str
    files: dict[str, Content]  # relative path → content
    config: Any = None


@dataclass
class RepoResult:
    """What ``write_repository`` wrote."""

    repository: Path
    models: list[str]
    files: list[Path]
    configs: dict[str, str]  # model name → config.pbtxt text
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def default_name(path: Path) -> str:
    """``ran92.int8.onnx`` → ``ran92_int8`` (dots would read like a version in a URL)."""
    stem = path.name
    for suffix in (".onnx", ".plan", ".engine"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem.replace(".", "_")


def read_labels(path: Path, artifact: Artifact) -> bytes:
    """Labels, one per line, checked against the class count."""
    labels = [line for line in read_utf8_lines(path, "labels file", param="labels") if line]
    classes = artifact.num_classes
    if classes is None and artifact.outputs:
        out = next(o for o in artifact.outputs if o.name == configs.classification_output(artifact))
        classes = out.shape[-1] if out.shape and out.shape[-1] > 0 else None
    if classes is not None and len(labels) != classes:
        raise TritonRepoError(
            f"{path} has {len(labels)} labels, but the model has {classes} classes.",
            hint="Give one label a line, in class-index order.",
        )
    return ("\n".join(labels) + "\n").encode("utf-8")


def model_folders(artifact: Artifact, name: str, options: configs.RepoOptions) -> list[ModelFolder]:
    """The folder(s) one artifact becomes: the model, and with ``preprocess`` two more."""
    files: dict[str, Content] = {}
    if artifact.kind == "plan":
        files["1/model.plan"] = artifact.path
    elif artifact.external_data:
        # Triton's ONNX Runtime backend reads a folder model.onnx/ holding the graph and weights.
        files["1/model.onnx/model.onnx"] = artifact.path
        for data in artifact.external_data:
            files[f"1/model.onnx/{data}"] = artifact.path.parent / data
    else:
        files["1/model.onnx"] = artifact.path
    if options.labels is not None:
        files["labels.txt"] = read_labels(Path(options.labels), artifact)
    cfg = configs.model_config(artifact, name, options, labels=options.labels is not None)
    folders = [ModelFolder(name, files, cfg)]
    if options.preprocess:
        _check_preprocessable(artifact)
        pre, ens = f"{name}_preprocess", f"{name}_ensemble"
        folders.append(
            ModelFolder(
                pre,
                {"1/model.py": model_source().encode("utf-8")},
                configs.preprocess_config(artifact, pre, options),
            )
        )
        folders.append(
            ModelFolder(ens, {"1/": b""}, configs.ensemble_config(artifact, ens, name, pre, options))
        )
    return folders


def ensemble_usage(name: str, artifact: Artifact) -> str:
    """How to call the ``--preprocess`` ensemble: what a client sends and gets back.

    verify/infer/bench send preprocessed tensors, so they talk to the model itself; the
    ensemble takes encoded image files. The NumPy spelling matters: ``np.object`` was removed
    in NumPy 2 (``np.object_`` or plain ``object`` work in both).
    """
    outputs = ", ".join(o.name for o in artifact.outputs or []) or "the model's outputs"
    return (
        f"{name}_ensemble takes encoded image files (JPEG/PNG bytes), one per row: "
        f"tritonclient.http.InferInput('{configs.IMAGE_INPUT}', [n, 1], 'BYTES') filled with "
        "set_data_from_numpy(np.array([[open(p, 'rb').read()] for p in paths], dtype=np.object_)); "
        f"it returns {outputs}. verify/infer/bench send preprocessed tensors: point them at "
        f"triton://HOST:8000/{name}."
    )


def _check_preprocessable(artifact: Artifact) -> None:
    needed = {"resize_size", "crop_size", "mean", "std"}
    if not artifact.preprocessing or not needed <= set(artifact.preprocessing):
        raise TritonRepoError(
            f"{artifact.path} does not record its preprocessing, so --preprocess cannot know how "
            "to turn an image into its input.",
            hint="Use a file exported by `python cli.py export` (its metadata has it), or drop "
            "--preprocess and send preprocessed tensors.",
        )
    if len(artifact.inputs) != 1 or artifact.inputs[0].data_type != "TYPE_FP32":
        raise TritonRepoError(
            "--preprocess needs a model with one FP32 image input.",
            hint="Every deploy-ran export has one; drop --preprocess for other files.",
        )
    if not artifact.batched or artifact.outputs is None:
        raise TritonRepoError(
            f"--preprocess needs a dynamic-batch file whose outputs are known ({artifact.path}).",
            hint="Export without --static-batch (and keep a plan's source ONNX beside it).",
        )


def write_repository(
    targets: list[str | Path],
    output: str | Path,
    options: configs.RepoOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> RepoResult:
    """Write (or, with ``force``, update) a model repository for ``targets`` (files).

    Every check runs before anything is written: bad files, names, options and existing folders
    fail with a :class:`TritonRepoError` and leave the repository as it was.
    """
    options = options or configs.RepoOptions()
    options.check()
    say = progress or (lambda _msg: None)
    if not targets:
        raise TritonRepoError("No target given.", hint="Give .onnx or .plan files (or model names).")
    if options.name is not None and len(targets) > 1:
        raise TritonRepoError(
            "--name names one model, but several targets were given.",
            hint="Drop --name (each model is named after its file) or write one target per call.",
        )
    repo = Path(output)
    if repo.exists() and not repo.is_dir():
        raise TritonRepoError(f"{repo} exists and is not a folder.", hint="Choose another --output.")
    if not repo.parent.exists():
        raise TritonRepoError(
            f"Folder {repo.parent} does not exist.", hint=f"Create it first (mkdir -p {repo.parent})."
        )

    planned: list[tuple[Artifact, ModelFolder]] = []
    result = RepoResult(repo, [], [], {})
    for target in targets:
        artifact = read_artifact(target, options.max_batch)
        name = configs.check_model_name(
            default_name(artifact.path) if options.name is None else options.name
        )
        say(f"describing {artifact.path} as model {name}")
        for folder in model_folders(artifact, name, options):
            text = configs.to_text(folder.config)
            if folder.name == name:
                configs.cross_check(text, artifact)
            else:
                configs.parse(text)
            folder.files["config.pbtxt"] = text.encode("utf-8")
            planned.append((artifact, folder))
            result.configs[folder.name] = text
        result.artifacts[name] = artifact
        result.notes.extend(f"{name}: {note}" for note in artifact.notes)
        if options.preprocess:
            result.notes.append(ensemble_usage(name, artifact))

    names = [f.name for _, f in planned]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TritonRepoError(
            f"Two targets would both become model {', '.join(dupes)}.",
            hint="Rename one file, or write them in separate calls with --name.",
        )
    existing = [n for n in names if (repo / n).exists()]
    if existing and not options.force:
        raise TritonRepoError(
            f"Model folder(s) {', '.join(str(repo / n) for n in existing)} already exist.",
            hint="Add --force to replace the files this command writes (other files in the "
            "folder are kept), or choose another --name/--output.",
        )
    for name in existing:
        _check_replaceable(repo / name, next(f for _, f in planned if f.name == name))

    repo.mkdir(exist_ok=True)
    clean_stale_temps_in(repo)  # staging folders of runs killed with SIGKILL, whatever model
    for _, folder in planned:
        say(f"writing {repo / folder.name}")
        target = repo / folder.name
        if target.exists():
            result.files.extend(_update_folder(target, folder))
        else:
            result.files.extend(_new_folder(repo, folder))
        result.models.append(folder.name)
    return result


def _check_replaceable(target: Path, folder: ModelFolder) -> None:
    """With --force, a path of ours that exists as the other kind (file vs folder) is refused."""
    for rel in folder.files:
        path = target / rel
        wants_dir = rel.endswith("/")
        if path.exists() and not wants_dir and path.is_dir():
            raise TritonRepoError(
                f"{path} is a folder, but this model writes a file there.",
                hint="Remove it yourself (it may hold files deploy-ran did not write).",
            )
        for parent in list(Path(rel).parents)[:-1]:
            if (target / parent).is_file():
                raise TritonRepoError(
                    f"{target / parent} is a file, but this model needs a folder there.",
                    hint="Remove it yourself, or choose another --name.",
                )


def _put(path: Path, content: Content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if isinstance(content, Path):
            shutil.copyfile(content, tmp)
        else:
            tmp.write_bytes(content)


def _materialise(root: Path, folder: ModelFolder) -> list[Path]:
    written = []
    # The config last: a server reloading the folder sees the model file before its config.
    order = sorted(folder.files, key=lambda rel: rel == "config.pbtxt")
    for rel in order:
        if rel.endswith("/"):
            (root / rel).mkdir(parents=True, exist_ok=True)
            continue
        _put(root / rel, folder.files[rel])
        written.append(Path(rel))
    return written


def _new_folder(repo: Path, folder: ModelFolder) -> list[Path]:
    """Build the model folder under a staging name and rename it into place.

    The staging name carries the writer's PID and host (``.NAME.<pid>-<host>.XXXX.tmp``), so a
    run killed by SIGKILL (which cannot clean up) leaves a folder the next run recognises as
    a dead writer's and removes; a live writer's is never touched.
    """
    clean_stale_temps(repo / folder.name)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{folder.name}.{owner_tag()}.", suffix=".tmp", dir=repo)
    )
    try:
        written = _materialise(staging, folder)
        os.chmod(staging, 0o777 & ~_umask())
        os.rename(staging, repo / folder.name)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)  # our own temporary folder, nothing else
        raise
    return [repo / folder.name / rel for rel in written]


def _update_folder(target: Path, folder: ModelFolder) -> list[Path]:
    return [target / rel for rel in _materialise(target, folder)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
