"""One borrowed GPU slot, one script: check the carried wheels, probe the GPU, then measure in
steps that each leave a small results file in $OUT before the next one starts.

    python3 scripts/gpu_lease.py --out "$OUT"                          # on the lent GPU host
    python3 scripts/gpu_lease.py --out /tmp/o --device cpu --model ran56_cifar --batches 1 \\
        --budget 240                                                   # dry run on a CPU
    python3 scripts/gpu_lease.py pack WHEEL... --into .lease --parts 3 # prepare the carried parts

Why it looks like this: a slot is ~15 minutes of device time all told (start-up included), at
most 600 s per command, 64 MiB carried in and a few small files back. The earlier shell scripts
lost whole slots: a missing module under ``set -e`` stopped everything, results were copied to
$OUT only at the very end (a call killed at 600 s returned nothing), 200 MiB artifacts in $OUT
made the return a matter of chance, any probe failure printed "SKIPPED: no CUDA GPU" with exit 0,
and missing wheel parts silently turned every ONNX Runtime row into "skipped". So:

* Only the standard library at the top: the script runs before anything is installed (python3,
  as the image documents).
* **Parts first** (exit 12): every carried part named in a ``MANIFEST.json`` (``pack`` writes it)
  is checked against its sha256 before anything starts; the wheels are reassembled, checked
  again, and installed with ``pip --no-index --target`` into a folder put on ``PYTHONPATH``.
* **Probe** (exit 10 / 11): a child python imports torch and onnxruntime and reports the GPU. "No
  CUDA GPU" (exit 10) and "the probe itself broke" (exit 11, with its stderr) are different
  messages and exit codes; neither says SKIPPED. ``--device cpu`` is the dry run and needs no GPU.
* **Steps**, each a child process in its own process group under its own timeout, capped by what
  is left of ``--budget`` (default 560 s: one 600 s call less a margin). A step that times out
  is killed and recorded; the next step still runs if time is left.
* SIGTERM (the call being stopped) kills the running step's process group, records the step as
  ``killed`` and writes the results before exiting 143.
* **After every step** ``$OUT/lease_results.json`` is rewritten (temp file, then rename) with
  every step's status, seconds and log tail, and the step's small results (JSON/CSV/PNG, at most
  1 MiB each) are copied into $OUT. Artifacts (ONNX files, engines, logs) stay in ``--work``.

Exit codes: 0 every step ran, 1 a step failed or timed out, 10 no GPU, 11 broken probe, 12 a bad
or missing carried part, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXIT_FAILED, EXIT_NO_GPU, EXIT_BROKEN_PROBE, EXIT_BAD_PART = 1, 10, 11, 12
RESULT_SUFFIXES = (".json", ".csv", ".png")
MAX_RESULT_BYTES = 1024 * 1024
RESULTS_NAME = "lease_results.json"
#: Seconds kept back from the budget for the last results write and the tool's own overhead.
RESERVE_S = 10
#: Default timeout per step (seconds); ``--timeout STEP=S`` overrides one.
STEP_TIMEOUTS = {"probe": 60, "export": 150, "speed": 240, "check": 150, "compile": 180}
DEFAULT_STEPS = ("probe", "export", "speed", "check", "compile")
LOG_TAIL = 3000


class LeaseStop(Exception):
    """Stop before measuring, with the exit code and the message for the user."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class StepResult:
    name: str
    status: str  # ok | failed | timeout | no time
    seconds: float = 0.0
    returncode: int | None = None
    command: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)  # files copied into $OUT
    left_out: list[str] = field(default_factory=list)  # results too big or of another kind
    log_tail: str = ""


@dataclass
class Lease:
    """Where things go and how much time is left."""

    out: Path
    work: Path
    python: str
    budget_s: float
    started: float = field(default_factory=time.monotonic)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    steps: list[StepResult] = field(default_factory=list)
    info: dict[str, object] = field(default_factory=dict)

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started) - RESERVE_S

    def write(self) -> None:
        """``$OUT/lease_results.json``, atomically."""
        record = {
            "format": "deploy-ran gpu lease",
            "budget_s": self.budget_s,
            "elapsed_s": round(time.monotonic() - self.started, 1),
            **self.info,
            "steps": [asdict(s) for s in self.steps],
        }
        _atomic_write(self.out / RESULTS_NAME, json.dumps(record, indent=1) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------- carried parts


def check_parts(manifest: Path) -> list[dict]:
    """Every part of every wheel in ``manifest`` present with its sha256, or :class:`LeaseStop`
    (exit 12) naming each bad one. Paths are relative to the manifest's folder."""
    try:
        wheels = json.loads(manifest.read_text(encoding="utf-8"))["wheels"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LeaseStop(EXIT_BAD_PART, f"manifest {manifest} is unreadable ({exc!r})") from None
    bad = []
    for wheel in wheels:
        for part in wheel["parts"]:
            path = manifest.parent / part["path"]
            if not path.is_file():
                bad.append(f"{part['path']} (of {wheel['name']}) is missing")
            elif sha256(path) != part["sha256"]:
                bad.append(f"{part['path']} (of {wheel['name']}) has the wrong sha256")
    if bad:
        raise LeaseStop(
            EXIT_BAD_PART,
            "carried parts are bad, nothing was started: "
            + "; ".join(bad)
            + ". Carry every part listed in the manifest (the run tool's carry=...), or re-run "
            "`python3 scripts/gpu_lease.py pack`.",
        )
    return wheels


def install_parts(lease: Lease, manifest: Path, wheels: list[dict]) -> Path:
    """Reassemble each wheel in ``work``, check it, ``pip install --no-index --target``."""
    site = lease.work / "site"
    built = []
    for wheel in wheels:
        target = lease.work / "wheels" / wheel["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            for part in wheel["parts"]:
                with open(manifest.parent / part["path"], "rb") as handle:
                    shutil.copyfileobj(handle, out)
        if sha256(target) != wheel["sha256"]:
            raise LeaseStop(EXIT_BAD_PART, f"{wheel['name']} reassembled with the wrong sha256")
        built.append(str(target))
    command = [lease.python, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
               "--no-compile", "--target", str(site), *built]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=max(lease.left(), 1))
    if done.returncode != 0:
        raise LeaseStop(
            EXIT_BAD_PART, f"pip could not install the carried wheels: {done.stderr[-800:]}"
        )
    path = lease.env.get("PYTHONPATH")
    lease.env["PYTHONPATH"] = f"{site}{os.pathsep}{path}" if path else str(site)
    return site


def pack(wheels: list[Path], into: Path, parts: int) -> Path:
    """Split each wheel into ``parts`` pieces under ``into`` and write ``into/MANIFEST.json``."""
    into.mkdir(parents=True, exist_ok=True)
    entries = []
    for wheel in wheels:
        data = wheel.read_bytes()
        size = -(-len(data) // parts)
        pieces = []
        for i in range(parts):
            chunk = data[i * size : (i + 1) * size]
            if not chunk:
                break
            name = f"{wheel.name}.part{i:02d}"
            (into / name).write_bytes(chunk)
            pieces.append({"path": name, "sha256": hashlib.sha256(chunk).hexdigest()})
        entries.append(
            {"name": wheel.name, "sha256": hashlib.sha256(data).hexdigest(), "parts": pieces}
        )
    manifest = into / "MANIFEST.json"
    _atomic_write(manifest, json.dumps({"wheels": entries}, indent=1) + "\n")
    return manifest


# ------------------------------------------------------------------------------------- probe

PROBE = r"""
import json, torch
info = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
if info["cuda_available"]:
    info["gpu"] = torch.cuda.get_device_name(0)
    info["capability"] = list(torch.cuda.get_device_capability(0))
try:
    import onnxruntime as ort
    info["onnxruntime"] = ort.__version__
    info["ort_providers"] = ort.get_available_providers()
except Exception as exc:
    info["onnxruntime"] = f"not importable: {type(exc).__name__}: {exc}"
try:
    import onnxslim
    info["onnxslim"] = onnxslim.__version__
except Exception as exc:
    info["onnxslim"] = f"not importable: {type(exc).__name__}"
print("PROBE " + json.dumps(info))
"""


def probe(lease: Lease, device: str) -> dict:
    """The GPU and libraries as a child python sees them; exit 10 / 11 as the docstring says."""
    timeout = min(STEP_TIMEOUTS["probe"], max(lease.left(), 1))
    step = StepResult("probe", "failed", command=[lease.python, "-c", "<probe>"])
    t0 = time.monotonic()
    try:
        done = subprocess.run([lease.python, "-c", PROBE], capture_output=True, text=True,
                              timeout=timeout, env=lease.env)  # fmt: skip
        output, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, rc = f"probe timed out after {timeout:.0f} s: {exc.stdout or ''}", None
    except OSError as exc:
        output, rc = f"{type(exc).__name__}: {exc}", None
    step.seconds, step.returncode, step.log_tail = (
        round(time.monotonic() - t0, 1),
        rc,
        output[-LOG_TAIL:],
    )
    line = next((x for x in output.splitlines() if x.startswith("PROBE ")), None)
    lease.steps.append(step)
    if rc != 0 or line is None:
        lease.write()
        raise LeaseStop(
            EXIT_BROKEN_PROBE,
            f"the GPU probe itself failed (exit {rc}), so whether there is a GPU is unknown: "
            f"{output.strip()[-600:]}",
        )
    info = json.loads(line[len("PROBE ") :])
    step.status = "ok"
    lease.info["probe"] = info
    _atomic_write(lease.out / "environment.json", json.dumps(info, indent=1) + "\n")
    step.results.append("environment.json")
    lease.write()
    if device.startswith("cuda") and not info["cuda_available"]:
        raise LeaseStop(
            EXIT_NO_GPU,
            f"no CUDA GPU: PyTorch {info['torch']} (CUDA build {info['cuda_build']}) sees none. "
            "Run it on a GPU host, or use --device cpu for the dry run.",
        )
    if device.startswith("cuda") and "CUDAExecutionProvider" not in info.get("ort_providers", []):
        lease.info["warning"] = (
            "onnxruntime has no CUDAExecutionProvider: every ONNX Runtime CUDA row will be "
            "'skipped'. Carry the onnxruntime-gpu parts (--manifest)."
        )
        print(f"gpu_lease: WARNING: {lease.info['warning']}", file=sys.stderr)
    return info


# ------------------------------------------------------------------------------------- steps


def step_commands(
    args: argparse.Namespace, work: Path, simplify: bool = True
) -> dict[str, list[list[str]]]:
    """The commands of each measuring step (one step may be several commands). ``simplify``
    False (onnxslim absent on the host) exports without onnxslim rather than not at all."""
    py, model, device = args.python, args.model, args.device
    largest = args.batches.split(",")[-1]
    cli = str(ROOT / "cli.py")
    slim = [] if simplify else ["--no-simplify"]
    speed = [py, str(ROOT / "benchmarks" / "gpu_speed.py"), "--model", model, "--quick",
             "--device", device, *slim]  # fmt: skip
    calib_device = ["--calib-device", device] if device.startswith("cuda") else []
    return {
        "export": [
            [py, cli, "export", model, *slim, "--output", str(work / f"{model}.onnx")],
            # FP16 from the FP32 file just written (a model name would re-export over it)
            [
                py,
                cli,
                "export",
                str(work / f"{model}.onnx"),
                "--precision",
                "fp16",
                "--output",
                str(work / f"{model}.fp16.onnx"),
            ],
            # random weights may miss the agreement bar: the file is still worth timing
            [py, cli, "calibrate", str(work / f"{model}.onnx"), "--calib-images", "64",
             "--allow-failing", *calib_device, "--output", str(work / f"{model}.int8.onnx")],
        ],  # fmt: skip
        "speed": [
            [
                *speed,
                "--batch-sizes",
                args.batches,
                "--groups",
                args.speed_groups,
                "-o",
                str(work / "speed"),
            ],
        ],  # fmt: skip
        "check": [
            [
                py,
                str(ROOT / "scripts" / "gpu_check_report.py"),
                "check",
                str(work),
                model,
                "--device",
                device,
                "--json",
                str(work / "check" / "gpu_check.json"),
            ],
        ],  # fmt: skip
        "compile": [
            [*speed, "--batch-sizes", largest, "--groups", "compile", "-o", str(work / "compile")],
        ],
        "sleep": [[py, "-c", "import time; time.sleep(3600)"]],  # tests: a step that never ends
    }


def _result_dirs(name: str, work: Path) -> list[Path]:
    return {
        "speed": [work / "speed"],
        "check": [work / "check"],
        "compile": [work / "compile"],
    }.get(name, [])


def collect_results(step: StepResult, work: Path, out: Path) -> None:
    """Copy the step's small JSON/CSV/PNG results (≤ 1 MiB each) into ``out``."""
    for folder in _result_dirs(step.name, work):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.suffix not in RESULT_SUFFIXES:
                continue
            if path.stat().st_size > MAX_RESULT_BYTES:
                step.left_out.append(f"{path.name} ({path.stat().st_size} bytes > 1 MiB)")
                continue
            name = f"{step.name}_{path.name}" if (out / path.name).exists() else path.name
            shutil.copy2(path, out / name)
            step.results.append(name)


def run_step(lease: Lease, name: str, commands: list[list[str]], timeout_s: float) -> StepResult:
    """Run ``commands`` in turn under one timeout (each in its own process group, killed whole
    when time is up); record and write the results whatever happens."""
    step = StepResult(name, "ok")
    budget = min(timeout_s, lease.left())
    if lease.left() < 5:  # not worth starting: record it instead
        step.status = "no time"
        step.log_tail = f"{lease.left():.0f} s left of the budget"
        lease.steps.append(step)
        lease.write()
        return step
    log = lease.work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    stopped: BaseException | None = None
    with open(log, "w", encoding="utf-8") as handle:
        for command in commands:
            step.command = command
            left = budget - (time.monotonic() - t0)
            handle.write(f"$ {' '.join(command)}\n")
            handle.flush()
            try:
                proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                                        env=lease.env, cwd=ROOT, start_new_session=True)  # fmt: skip
            except OSError as exc:  # a missing interpreter or script: this step fails, not the run
                step.status = "failed"
                handle.write(f"[gpu_lease] could not start: {type(exc).__name__}: {exc}\n")
                break
            try:
                step.returncode = proc.wait(timeout=max(left, 0.1))
            except subprocess.TimeoutExpired:
                _kill(proc)
                step.status = "timeout"
                handle.write(f"\n[gpu_lease] killed after {budget:.0f} s (step timeout)\n")
                break
            except BaseException as exc:  # SIGTERM (LeaseKilled) or Ctrl-C: record, then stop
                _kill(proc)
                step.status = "killed"
                handle.write(f"\n[gpu_lease] stopped by {type(exc).__name__}\n")
                stopped = exc
                break
            if step.returncode != 0:
                step.status = "failed"
                break
    step.seconds = round(time.monotonic() - t0, 1)
    step.log_tail = log.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]
    collect_results(step, lease.work, lease.out)
    lease.steps.append(step)
    lease.write()
    if stopped is not None:
        raise stopped
    return step


def _kill(proc: subprocess.Popen) -> None:
    """Kill the step's whole process group (its children too) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class LeaseKilled(Exception):
    """SIGTERM reached the lease (the device tool stopping the call): results are written first."""


def _on_sigterm(signum: int, _frame: object) -> None:
    raise LeaseKilled(f"signal {signum}")


# -------------------------------------------------------------------------------------- main


def _timeouts(items: list[str]) -> dict[str, float]:
    timeouts = dict(STEP_TIMEOUTS)
    for item in items:
        name, _, value = item.partition("=")
        try:
            timeouts[name] = float(value)
        except ValueError:
            raise SystemExit(f"--timeout takes STEP=SECONDS, got {item!r}") from None
    return timeouts


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    work = Path(args.work).resolve()
    if work == out or out in work.parents:
        print("gpu_lease: --work must be outside $OUT (artifacts stay out of it)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    lease = Lease(out, work, args.python, args.budget)
    lease.env["PYTHONUNBUFFERED"] = "1"
    lease.info.update(
        {
            "model": args.model,
            "device": args.device,
            "batches": args.batches,
            "steps_asked": args.steps,
        }
    )
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    commands = step_commands(args, work)  # known step names; rebuilt once the probe has run
    unknown = [s for s in steps if s != "probe" and s not in commands]
    if unknown:
        print(
            f"gpu_lease: unknown step(s) {unknown}; known: probe, {', '.join(commands)}",
            file=sys.stderr,
        )
        return 2
    timeouts = _timeouts(args.timeout)
    try:
        if args.manifest:
            manifest = Path(args.manifest)
            wheels = check_parts(manifest)
            install_parts(lease, manifest, wheels)
            lease.info["installed"] = [w["name"] for w in wheels]
        lease.write()
        if "probe" in steps:
            info = probe(lease, args.device)
            if str(info.get("onnxslim", "")).startswith("not importable"):
                lease.info["onnxslim"] = "absent: ONNX files exported with --no-simplify"
                commands = step_commands(args, work, simplify=False)
    except LeaseStop as stop:
        lease.info["stopped"] = {"exit_code": stop.code, "reason": stop.message}
        lease.write()
        print(f"gpu_lease: {stop.message}", file=sys.stderr)
        return stop.code
    signal.signal(signal.SIGTERM, _on_sigterm)
    for name in steps:
        if name == "probe":
            continue
        try:
            step = run_step(lease, name, commands[name], timeouts.get(name, 120))
        except (LeaseKilled, KeyboardInterrupt) as exc:
            lease.info["stopped"] = {"exit_code": 143, "reason": f"stopped during {name}: {exc!r}"}
            lease.write()
            print(f"gpu_lease: stopped during {name}; results so far are in {out}", file=sys.stderr)
            return 143
        print(f"gpu_lease: {name}: {step.status} ({step.seconds} s; results: "
              f"{', '.join(step.results) or 'none'})", flush=True)  # fmt: skip
    bad = [s.name for s in lease.steps if s.status != "ok"]
    return EXIT_FAILED if bad else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pack"]:
        parser = argparse.ArgumentParser(prog="gpu_lease.py pack")
        parser.add_argument("wheels", nargs="+", type=Path)
        parser.add_argument("--into", type=Path, required=True)
        parser.add_argument("--parts", type=int, default=1)
        args = parser.parse_args(argv[1:])
        print(pack(args.wheels, args.into, max(1, args.parts)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT"), help="results folder ($OUT)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "deploy-ran-lease"))
    parser.add_argument("--manifest", default=None, help="MANIFEST.json of the carried wheels")
    parser.add_argument("--python", default=shutil.which("python3") or sys.executable)
    parser.add_argument("--model", default="ran92")
    parser.add_argument("--batches", default="1,32,128")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=560.0, help="seconds for the whole run")
    parser.add_argument("--steps", default=",".join(DEFAULT_STEPS))
    parser.add_argument(
        "--speed-groups",
        default="main,independent,cuda-graphs,ort-options",
        help="benchmarks/gpu_speed.py groups of the speed step (compile is its own step)",
    )
    parser.add_argument("--timeout", action="append", default=[], metavar="STEP=S")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("give --out (or set $OUT)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
