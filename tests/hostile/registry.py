"""Every CLI command with a minimal valid invocation, and which hostile slots it takes.

A new command enters the hostile sweep with one line here; ``test_every_command_is_registered``
fails while a typer command is missing. Templates use ``{target}`` (the thing a command runs or
reads: an ONNX file by default; the ``onnx``, ``plan`` and ``url`` cases replace it), ``{images}``,
``{labels}``, ``{data}``, ``{labelled}`` (a class-per-folder image set), ``{checkpoint}`` and ``{out}`` (the only folder a command may write in).
``extra`` adds the option a slot needs when the minimal invocation does not use it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Command:
    name: str
    argv: tuple[str, ...]
    #: slots this command takes (see corpus.Case.slot)
    slots: frozenset[str]
    #: options added for a slot the minimal invocation leaves out, e.g. labels → --labels {labels}
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: the output path in ``argv`` (for the output cases); None: the command writes nothing
    output: str | None = None
    #: exit code of the minimal valid invocation
    valid_code: int = 0
    #: slots whose hostile cases may succeed: ``inspect`` describes any well-formed ONNX
    tolerant: frozenset[str] = frozenset()
    #: which argv token a slot replaces when it is not ``{slot}`` (calibrate: data → {images})
    tokens: dict[str, str] = field(default_factory=dict)
    #: further exit codes any case may give (build-engine without TensorRT ends with 3)
    also: tuple[int, ...] = ()
    #: slots whose cases run the whole command on good images (seconds each): marked slow
    slow_slots: frozenset[str] = frozenset()
    #: too slow for the default sweep (model export, benchmarks): marked slow
    slow: bool = False


#: Without TensorRT, build-engine converts what it can and ends with 3 ("finish on a GPU host").
NO_TRT: tuple[int, ...] = () if importlib.util.find_spec("tensorrt") else (3,)

TARGETS = frozenset({"onnx", "plan", "url"})

COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command("models", ("models", "ran56*"), frozenset()),
        Command("doctor", ("doctor", "--json"), frozenset()),
        Command(
            "inspect", ("inspect", "{target}"), frozenset({"onnx", "plan"}),
            tolerant=frozenset({"onnx-servable", "onnx-broken"}),
        ),
        Command(
            "export",
            ("export", "ran56_cifar", "--image-size", "32", "--output", "{out}/m.onnx"),
            frozenset({"checkpoint", "output"}),
            extra={"checkpoint": ("--checkpoint", "{checkpoint}")},
            output="{out}/m.onnx",
            slow=True,
        ),
        Command(
            "calibrate",
            ("calibrate", "{target}", "--data", "{images}", "--num-images", "2", "--batch", "2",
             "--eval-images", "2", "--allow-failing", "--output", "{out}/m.int8.onnx"),
            frozenset({"onnx", "images", "data", "output"}),
            tokens={"data": "{images}"},
            output="{out}/m.int8.onnx",
            slow_slots=frozenset({"images", "data"}),
        ),
        Command(
            "build-engine",
            ("build-engine", "{target}", "--output", "{out}/m.plan"),
            frozenset({"onnx", "output"}),
            output="{out}/m.plan",
            valid_code=0 if NO_TRT == () else 3,
            also=NO_TRT,
        ),
        Command(
            "demo",
            ("demo", "--model", "ran56_cifar", "--image-size", "32", "--workdir", "{out}/demo",
             "--runs", "1", "--calibration-images", "2"),
            frozenset(),
            slow=True,
        ),
        Command(
            "visualize",
            ("visualize", "ran56_cifar", "{images}", "--image-size", "32", "--output",
             "{out}/a.png"),
            frozenset({"images", "checkpoint", "output"}),
            extra={"checkpoint": ("--checkpoint", "{checkpoint}")},
            output="{out}/a.png",
            slow_slots=frozenset({"images", "data"}),
        ),
        Command(
            "verify",
            ("verify", "{onnx}", "{target}", "-n", "2", "--batch", "2", "--output", "{out}/v.json"),
            frozenset({"onnx", "plan", "url", "images", "data", "output"}),
            extra={"images": ("--data", "{images}"), "data": ("--data", "{data}")},
            output="{out}/v.json",
        ),
        Command(
            "evaluate",
            ("evaluate", "{target}", "--data", "{labelled}", "--labels", "{labels}", "--batch",
             "2", "--output", "{out}/e.json"),
            frozenset({"onnx", "plan", "url", "images", "data", "labels", "output"}),
            tokens={"images": "{labelled}", "data": "{labelled}"},
            output="{out}/e.json",
            slow_slots=frozenset({"images", "data"}),
        ),
        Command(
            "bench",
            ("bench", "ran56_cifar", "--image-size", "32", "--backends", "ort", "--artifacts",
             "{target}", "--duration", "0.2", "--warmup", "0.1", "--no-plot", "--output",
             "{out}/b.json"),
            frozenset({"onnx", "output"}),
            output="{out}/b.json",
            tolerant=frozenset({"onnx-servable"}),  # a row that fails is recorded as failed
            slow=True,
        ),
        Command(
            "infer",
            ("infer", "{target}", "--images", "{images}", "--batch", "2", "--output",
             "{out}/p.jsonl"),
            frozenset({"onnx", "plan", "url", "images", "labels", "output"}),
            extra={"labels": ("--labels", "{labels}")},
            output="{out}/p.jsonl",
        ),
        Command(
            "triton-repo",
            ("triton-repo", "{target}", "--output", "{out}/repo", "--kind", "cpu"),
            frozenset({"onnx", "plan", "labels", "output"}),
            extra={"labels": ("--labels", "{labels}")},
            output="{out}/repo",
            tolerant=frozenset({"onnx-servable"}),
        ),
    ]
}
