"""Labelled validation data: which images, which class each one is, and how to read them in batches.

Three sources are understood, each giving file paths (or arrays) and integer labels without
decoding a single image up front, so 50,000 images cost a list of paths and an int array:

* an **ImageFolder tree** ``VAL/<class>/*.jpg``: classes sorted by name, or matched by name to
  ``--labels``; when every class folder is an integer (``0/``, ``7/``), that integer is the class
  index, so a folder holding only some classes still means what it says;
* a **CSV/TSV list** of ``path,label`` rows (a header row is allowed; paths are relative to the
  list's folder; labels are class indices, or class names matched to ``--labels`` or sorted);
* an **.npz** with ``x`` and ``y`` (``file.npz:test`` reads ``x_test``/``y_test``): ``x`` either
  preprocessed float NCHW at the model's size, or uint8 images (``N,H,W`` or ``N,H,W,C``) that are
  preprocessed like image files.

Images are decoded batch by batch (:func:`iter_batches`); an unreadable one is reported once and
left out of the batch, so every target sees exactly the same images.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_ran.errors import DeployRanError
from deploy_ran.images import IMAGE_EXTENSIONS, display_path
from deploy_ran.reading import read_utf8_lines, require_regular_file, walk_files

LIST_SUFFIXES = (".csv", ".tsv")


class DataError(DeployRanError):
    """Labelled data that cannot be read or does not fit the model."""

    def __init__(self, message: str, hint: str | None = None, param: str | None = "data") -> None:
        super().__init__(message, hint=hint, param=param)


@dataclass
class LabelledData:
    """Where the samples are and what class each one is; nothing decoded yet.

    Exactly one of ``paths`` (image files) and ``arrays`` (an ``.npz``'s ``x``) is set.
    """

    source: str
    kind: str  # "folder" | "list" | "npz"
    labels: np.ndarray  # int64, one per sample
    class_names: list[str] | None = None
    paths: list[Path] | None = None
    arrays: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def name_of(self, index: int) -> str:
        if self.paths is not None:
            return display_path(self.paths[index])
        return f"{Path(self.source).name}[{index}]"

    def limit(self, count: int | None) -> LabelledData:
        """The first ``count`` samples (all when ``None``)."""
        if count is None or count >= len(self):
            return self
        return LabelledData(
            self.source, self.kind, self.labels[:count], self.class_names,
            None if self.paths is None else self.paths[:count],
            None if self.arrays is None else self.arrays[:count],
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "samples": len(self),
            "classes": None if self.class_names is None else len(self.class_names),
        }


def labelled_arrays(
    x: np.ndarray, y: np.ndarray, source: str = "arrays", class_names: list[str] | None = None
) -> LabelledData:
    """In-memory samples (preprocessed float NCHW or uint8 images) and integer labels, for a
    Python caller that already holds them (the digits example's test split)."""
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"labels must be {len(x)} integers, got {y.dtype} of shape {list(y.shape)}.",
            hint="One integer class index per sample.",
        )
    return LabelledData(source, "npz", y.astype(np.int64), class_names, arrays=x)


@dataclass
class LabelledBatch:
    """Decoded samples of one batch; ``indices`` point into the :class:`LabelledData`."""

    indices: np.ndarray
    x: np.ndarray  # float32 NCHW
    y: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)


# ------------------------------------------------------------------------------------ reading


def read_labelled(source: str | Path, labels: str | Path | None = None) -> LabelledData:
    """Open ``source`` (folder, ``.csv``/``.tsv``, ``.npz[:split]``); see the module docstring.

    ``labels``: a file of class names, one per line, in the model's class-index order.
    """
    names = _read_names(labels) if labels is not None else None
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return _read_folder(path, names)
    npz, split = _npz_and_split(text)
    if npz is not None:
        return _read_npz(npz, split, names)
    if not path.exists():
        raise DataError(
            f"{display_path(text)} does not exist.",
            hint="--data takes a folder VAL/<class>/*.jpg, a path,label .csv/.tsv, or an .npz "
            "with x and y.",
        )
    if path.suffix.lower() in LIST_SUFFIXES:
        return _read_list(path, names)
    raise DataError(
        f"{display_path(text)} is neither a folder, a .csv/.tsv list nor an .npz.",
        hint="--data takes a folder VAL/<class>/*.jpg, a path,label .csv/.tsv, or an .npz with "
        "x and y.",
    )


def _read_names(path: str | Path) -> list[str]:
    from deploy_ran.infer import read_labels

    return read_labels(path)


def _index_of(found: Sequence[str], names: list[str] | None, where: str) -> dict[str, int]:
    """Class name → index: position in ``names`` (``--labels``), else the integer a name spells,
    else the position in the sorted order."""
    if names is None:
        if all(n.isdigit() for n in found):
            return {n: int(n) for n in found}
        return {n: i for i, n in enumerate(sorted(set(found)))}
    known = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(found) - set(known))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise DataError(
            f"{where} has classes that are not in the labels file: {shown}.",
            hint="Every class name must be a line of --labels (the model's class names, in "
            "index order); or drop --labels to number the classes in sorted order.",
            param="labels",
        )
    return known


def _read_folder(root: Path, names: list[str] | None) -> LabelledData:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{display_path(root)} has no class folders.",
            hint="Lay the images out as VAL/<class>/*.jpg (one folder per class), or pass a "
            "path,label .csv list.",
        )
    index = _index_of(classes, names, f"Folder {display_path(root)}")
    paths: list[Path] = []
    labels: list[int] = []
    for cls in classes:  # walk_files: regular files only, symlink loops visited once
        files = [p for p in walk_files(root / cls) if p.suffix.lower() in IMAGE_EXTENSIONS]
        paths += files
        labels += [index[cls]] * len(files)
    if not paths:
        raise DataError(
            f"The class folders of {display_path(root)} hold no images "
            f"({', '.join(IMAGE_EXTENSIONS)}).",
            hint="Lay the images out as VAL/<class>/*.jpg.",
        )
    numbered = names is None and all(c.isdigit() for c in classes)
    class_names = names if names is not None else None if numbered else classes
    return LabelledData(str(root), "folder", np.asarray(labels, np.int64), class_names, paths)


def _read_list(path: Path, names: list[str] | None) -> LabelledData:
    lines = read_utf8_lines(path, "list", param="data")  # a regular UTF-8 file, never a FIFO
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = [r for r in csv.reader(lines, delimiter=delimiter) if r and r[0].strip()]
    if rows and len(rows[0]) >= 2 and rows[0][1].strip().lower() in ("label", "class", "y"):
        rows = rows[1:]  # header
    bad = next((i for i, r in enumerate(rows) if len(r) < 2 or not r[1].strip()), None)
    if bad is not None or not rows:
        where = f"row {bad + 1}" if bad is not None else "it"
        sep = "tab" if delimiter == "\t" else "comma"
        raise DataError(
            f"{display_path(path)}: {where} is not a 'path{delimiter}label' pair.",
            hint=f"One image per row: the path, a {sep}, and the class (an index or a name).",
        )
    base = path.parent
    paths = [
        Path(r[0].strip()) if Path(r[0].strip()).is_absolute() else base / r[0].strip()
        for r in rows
    ]
    raw = [r[1].strip() for r in rows]
    if all(v.lstrip("-").isdigit() for v in raw):
        labels = np.asarray([int(v) for v in raw], np.int64)
        if labels.min() < 0 or (names is not None and labels.max() >= len(names)):
            raise DataError(
                f"{display_path(path)} has class index {int(labels.min() if labels.min() < 0 else labels.max())}, "
                f"outside 0…{len(names) - 1 if names else 'N'}.",
                hint="Class indices count from 0 in the model's class order.",
            )
        return LabelledData(str(path), "list", labels, names, paths)
    index = _index_of(raw, names, display_path(path))
    class_names = names if names is not None else sorted(index, key=index.__getitem__)
    return LabelledData(
        str(path), "list", np.asarray([index[v] for v in raw], np.int64), class_names, paths
    )


def _npz_and_split(text: str) -> tuple[Path | None, str | None]:
    """``file.npz`` or ``file.npz:split`` → (path, split); (None, None) for anything else."""
    if text.lower().endswith(".npz"):
        return Path(text), None
    head, sep, tail = text.rpartition(":")
    if sep and head.lower().endswith(".npz") and tail and "/" not in tail:
        return Path(head), tail
    return None, None


def _read_npz(path: Path, split: str | None, names: list[str] | None) -> LabelledData:
    require_regular_file(path, ".npz file", param="data")  # stat only: a FIFO cannot block
    xk, yk = ("x", "y") if split is None else (f"x_{split}", f"y_{split}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if xk not in keys or yk not in keys:
                raise DataError(
                    f"{display_path(path)} has arrays {keys}; evaluate needs {xk!r} and {yk!r}.",
                    hint="Save images as x and labels as y (np.savez), or name a split: "
                    "--data file.npz:test reads x_test and y_test.",
                )
            x, y = npz[xk], npz[yk]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{display_path(path)} is not a readable .npz ({type(exc).__name__}: {exc}).",
            hint="Save with np.savez (object arrays are refused).",
        ) from None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(x):
        raise DataError(
            f"{display_path(path)}: {yk} must be {len(x)} integer class indices, got "
            f"{y.dtype} of shape {list(y.shape)}.",
            hint=f"One integer label per sample of {xk}.",
        )
    floating = np.issubdtype(x.dtype, np.floating) and x.ndim == 4
    images = x.dtype == np.uint8 and x.ndim in (3, 4)
    if not (floating or images):
        raise DataError(
            f"{display_path(path)}: {xk} is {x.dtype} of shape {list(x.shape)}.",
            hint="Store preprocessed float32 NCHW samples, or uint8 images N,H,W or N,H,W,C.",
        )
    if len(y) and int(y.min()) < 0:
        raise DataError(
            f"{display_path(path)}: {yk} has negative labels.", hint="Classes count from 0."
        )
    shown = f"{path}:{split}" if split else str(path)
    return LabelledData(shown, "npz", y.astype(np.int64), names, arrays=x)


# ------------------------------------------------------------------------------------ batches


def iter_batches(
    data: LabelledData,
    preprocessing: Mapping[str, Any] | None,
    shape: tuple[int, ...],
    batch_size: int,
    *,
    workers: int = 2,
) -> Iterator[LabelledBatch]:
    """Decoded, preprocessed batches of ``data`` (float32 NCHW of ``shape`` per sample).

    Only one batch is held at a time. Unreadable images are listed in the batch's ``skipped``
    and left out of it.
    """
    if data.arrays is not None and np.issubdtype(data.arrays.dtype, np.floating):
        if tuple(data.arrays.shape[1:]) != tuple(shape):
            raise DataError(
                f"{data.source} holds samples of shape {list(data.arrays.shape[1:])}; the "
                f"targets take {list(shape)}.",
                hint="Save preprocessed NCHW samples at the model's input size, or uint8 images.",
            )
        for start in range(0, len(data), batch_size):
            stop = min(start + batch_size, len(data))
            x = np.ascontiguousarray(data.arrays[start:stop], dtype=np.float32)
            yield LabelledBatch(np.arange(start, stop), x, data.labels[start:stop])
        return
    if preprocessing is None:
        raise DataError(
            "None of the targets says how to preprocess images (no model spec, no ONNX metadata).",
            hint="Use artifacts exported by deploy-ran, or pass preprocessed samples in an .npz.",
        )
    if int(preprocessing["crop_size"]) != shape[-1]:
        raise DataError(
            f"The preprocessing crops {preprocessing['crop_size']} px but the targets take "
            f"{shape[-1]} px.",
            hint="The artifact's metadata and its input disagree; re-export it.",
            param=None,
        )
    decode = _decoder(data, preprocessing)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL releases the GIL while decoding
        for start in range(0, len(data), batch_size):
            idx = range(start, min(start + batch_size, len(data)))
            results = list(pool.map(decode, idx))
            keep = [i for i, (arr, _) in zip(idx, results) if arr is not None]
            skipped = [
                {"path": data.name_of(i), "error": err or "unreadable"}
                for i, (arr, err) in zip(idx, results)
                if arr is None
            ]
            arrays = [arr for arr, _ in results if arr is not None]
            x = np.stack(arrays) if arrays else np.empty((0, *shape), np.float32)
            yield LabelledBatch(np.asarray(keep, np.int64), x, data.labels[keep], skipped)


def _decoder(
    data: LabelledData, preprocessing: Mapping[str, Any]
) -> Callable[[int], tuple[np.ndarray | None, str | None]]:
    if data.paths is not None:
        from deploy_ran.infer.dataset import decode_image

        paths, prep = data.paths, dict(preprocessing)
        return lambda i: decode_image(paths[i], prep)
    from PIL import Image

    from deploy_ran.images import preprocess, to_rgb

    arrays = data.arrays
    assert arrays is not None

    def from_array(i: int) -> tuple[np.ndarray | None, str | None]:
        img = arrays[i]
        image = Image.fromarray(img if img.ndim == 2 or img.shape[-1] != 1 else img[..., 0])
        return preprocess(to_rgb(image), preprocessing), None

    return from_array
