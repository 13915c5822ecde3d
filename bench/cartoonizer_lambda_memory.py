"""Peak memory and CPU seconds of the image Lambda's work, per image size: the floor for cartoonizer.image.memory_mb.

Each size runs in its own subprocess (its peak RSS is its own): the model is written to a file and loaded the
way the Lambda loads it (no onnx import), then one JPEG of that size goes through `cartoonize_image_bytes`,
the Lambda's code path (decode, BGR/pad, model, crop, encode). Random weights: memory and time do not depend on
the values.

    python bench/cartoonizer_lambda_memory.py                    # 1280x720, 1920x1080, 1920x1920
    python bench/cartoonizer_lambda_memory.py --sizes 640x480    # proof run in seconds
"""

# ruff: noqa: PLC0415 - the measured worker imports only what the Lambda imports

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def worker(model: Path, width: int, height: int) -> dict[str, float]:
    """Cartoonize one random JPEG of width x height as the Lambda does; report peak RSS and CPU seconds."""
    import numpy as np
    from PIL import Image

    from runtime.cartoonizer.engine import Cartoonizer
    from runtime.cartoonizer.images import cartoonize_image_bytes

    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    jpeg = io.BytesIO()
    Image.fromarray(pixels).save(jpeg, format="JPEG", quality=90)
    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine = Cartoonizer(model, device="cpu")
    wall, cpu = time.perf_counter(), time.process_time()
    cartoonize_image_bytes(jpeg.getvalue(), engine=engine, image_format="JPEG", max_side=max(width, height))
    return {
        "width": width,
        "height": height,
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "rss_after_imports_mib": after_imports,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    """Run each size in a fresh process and print a table (and JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1280x720,1920x1080,1920x1920", help="WxH list (1920 is the default cap)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        model, width, height = args.worker
        print(json.dumps(worker(Path(model), int(width), int(height))))
        return 0
    from runtime.cartoonizer.network import random_weights
    from runtime.cartoonizer.onnx_model import build_model

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.onnx"
        weights = {f"generator/{name}": value for name, value in random_weights(seed=0).items()}
        model.write_bytes(build_model(weights).SerializeToString())
        for size in args.sizes.split(","):
            width, height = size.split("x")
            out = subprocess.run(
                [sys.executable, __file__, "--worker", str(model), width, height],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'size':>10} {'peak RSS MiB':>13} {'after imports':>14} {'CPU s':>7} {'wall s':>7}")
    for r in results:
        size = f"{r['width']}x{r['height']}"
        row = f"{r['peak_rss_mib']:13.0f} {r['rss_after_imports_mib']:14.0f} {r['cpu_s']:7.2f} {r['wall_s']:7.2f}"
        print(f"{size:>10} {row}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
