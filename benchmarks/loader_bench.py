"""Images/s of one ``infer`` loader worker on 12-megapixel JPEGs at a model's input size: full
decoding against reduced-size (``PIL.Image.draft``) decoding, and what ``infer`` runs today.

Writes ``loader_<model>_<size>px_<photo>_<environment tag>.json`` (the environment in the name,
as for ``bench``) and prints a short summary. The JPEGs are generated (photo-like: smooth
structure plus sensor noise, quality 90, about 2.7 MB each), so the run needs no data.

    python benchmarks/loader_bench.py --model ran92 --image-size 224 --count 6 --repeats 2 -o benchmarks/
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy_ran.bench.loader import PHOTO_SIZE, loader_benchmark  # noqa: E402
from deploy_ran.environment import collect_environment, environment_tag  # noqa: E402
from deploy_ran.fileio import atomic_write_text  # noqa: E402
from deploy_ran.models import get_spec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ran92", help="Model whose preprocessing is used.")
    parser.add_argument("--image-size", type=int, default=224, help="Model input H=W.")
    parser.add_argument("--count", type=int, default=6, help="Generated JPEGs.")
    parser.add_argument("--repeats", type=int, default=2, help="Passes over the JPEGs.")
    parser.add_argument(
        "--photo-size", default=f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}", help="W x H of the JPEGs."
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("bench_results"))
    args = parser.parse_args()

    w, h = (int(v) for v in args.photo_size.lower().split("x"))
    pre = get_spec(args.model).preprocessing(args.image_size)
    load_before = os.getloadavg()
    result = loader_benchmark(
        pre, count=args.count, photo_size=(w, h), repeats=args.repeats, progress=print
    )
    env = collect_environment()
    record = {
        "model": args.model,
        "image_size": args.image_size,
        "command": "python benchmarks/loader_bench.py " + " ".join(sys.argv[1:]),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "environment": env,
        "environment_tag": environment_tag(env),
        **result.as_dict(),
    }
    args.output.mkdir(parents=True, exist_ok=True)
    mp = round(w * h / 1e6)
    path = args.output / (
        f"loader_{args.model}_{args.image_size}px_{mp}mp_{environment_tag(env)}.json"
    )
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    for mode, ips in result.images_per_s.items():
        print(
            f"{mode:>8}: {ips:6.2f} images/s per worker, median {result.ms_per_image[mode]:7.1f} "
            f"ms/image, decoded at {result.decoded_size[mode][0]}×{result.decoded_size[mode][1]}"
        )
    print(f"reduced / full: {result.reduced_speedup:.2f}×; infer decodes: {result.infer_decoding}")
    print(f"load average before {load_before}, after {os.getloadavg()}; wrote {path}")


if __name__ == "__main__":
    main()
