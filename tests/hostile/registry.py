"""Every CLI command with a minimal valid invocation, and which hostile slots it takes.

A new command enters the hostile sweep with one line here; ``test_every_command_is_registered``
fails while a typer command is missing. Templates use ``{target}`` (the thing a command runs or
reads: an ONNX file by default; the ``onnx``, ``plan`` and ``url`` cases replace it), ``{images}``,
``{labels}``, ``{data}``, ``{val}`` (a labelled ``VAL/<class>/*`` folder), ``{checkpoint}`` and ``{out}`` (the only folder a command may write in).
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
    #: too slow for the default sweep (model export, benchmarks): marked slow
    slow: bool = False


TARGETS = frozenset({"onnx", "plan", "url"})

COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command("models", ("models", "ran56*"), frozenset()),
        Command("doctor", ("doctor", "--json"), frozenset()),
        Command("inspect", ("inspect", "{target}"), frozenset({"onnx", "plan"})),
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
             "--eval-images", "2", "--output", "{out}/m.int8.onnx"),
            frozenset({"onnx", "images", "data", "output"}),
            output="{out}/m.int8.onnx",
        ),
        Command(
            "build-engine",
            ("build-engine", "{target}", "--output", "{out}/m.plan"),
            frozenset({"onnx", "output"}),
            output="{out}/m.plan",
            valid_code=0 if importlib.util.find_spec("tensorrt") else 3,  # 3: no TensorRT here
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
            ("evaluate", "{target}", "--data", "{val}", "--batch", "2", "--output", "{out}/e.json"),
            frozenset({"onnx", "plan", "url", "images", "labels", "data", "output"}),
            extra={
                "images": ("--data", "{images}"),
                "labels": ("--labels", "{labels}"),
                "data": ("--data", "{data}"),
            },
            output="{out}/e.json",
        ),
        Command(
            "bench",
            ("bench", "ran56_cifar", "--image-size", "32", "--backends", "ort", "--artifacts",
             "{target}", "--duration", "0.2", "--warmup", "0.1", "--no-plot", "--output",
             "{out}/b.json"),
            frozenset({"onnx", "output"}),
            output="{out}/b.json",
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
        ),
    ]
}
