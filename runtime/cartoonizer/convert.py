"""Convert the public TensorFlow checkpoint to the cartoonizer ONNX model plus manifest.json, without TensorFlow.

    python -m runtime.cartoonizer.convert --checkpoint DIR --out model.onnx [--name NAME]

DIR holds `model-33999.index` and `model-33999.data-00000-of-00001` (and usually a `checkpoint` file) from the
original repository's test_code/saved_models. Run it once on a machine with internet, then upload the two
files it writes to s3://<models bucket>/cartoonizer/<name>/ (docs/cartoonizer.md).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from ..common.errors import InputError
from .model_store import LICENCE, NOTICE, write_manifest
from .network import SCOPE, expected_shapes, parameter_count
from .onnx_model import build_model
from .tf_bundle import CheckpointError, read_bundle, resolve_prefix


def find_scope(tensors: Mapping[str, np.ndarray]) -> str:
    """The variable scope the generator's 36 tensors live under ("generator" in the public checkpoint).

    Optimizer slots (`.../Adam`), the discriminator and counters are ignored; CheckpointError lists what is
    missing or mis-shaped when no scope holds the whole generator.
    """
    expected = expected_shapes()
    anchor = f"/{next(iter(expected))}"
    candidates = sorted({name[: -len(anchor)] for name in tensors if name.endswith(anchor)})
    if SCOPE in candidates:
        candidates.remove(SCOPE)
        candidates.insert(0, SCOPE)
    problems: list[str] = []
    for scope in candidates:
        found = [
            f"{scope}/{name}: missing"
            if f"{scope}/{name}" not in tensors
            else f"{scope}/{name}: shape {tuple(tensors[f'{scope}/{name}'].shape)}, expected {shape}"
            for name, shape in expected.items()
            if f"{scope}/{name}" not in tensors or tuple(tensors[f"{scope}/{name}"].shape) != shape
        ]
        if not found:
            return scope
        problems.extend(found)
    if not candidates:
        problems.append(f"no tensor named */{next(iter(expected))}")
    raise CheckpointError(
        "the checkpoint does not hold the White-box Cartoonization generator: " + "; ".join(problems[:12])
    )


def convert(checkpoint: Path, out: Path, *, name: str | None = None) -> Path:
    """Read the bundle, build and check the ONNX model, write it and manifest.json beside it; return the model."""
    tensors = read_bundle(checkpoint)
    scope = find_scope(tensors)
    weights = {
        key: np.asarray(value, dtype=np.float32) for key, value in tensors.items() if key.startswith(scope + "/")
    }
    prefix = resolve_prefix(checkpoint)
    metadata = {
        "source_checkpoint": prefix.name,
        "licence": LICENCE,
        "notice": NOTICE,
        "io": "images float32 [N,3,H,W] BGR in [-1,1], H,W multiples of 8 -> cartoons float32 [N,3,H,W] BGR in [-1,1]",
    }
    model = build_model(weights, scope=scope, metadata=metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out))
    write_manifest(
        out,
        name=name or out.parent.name or out.stem,
        source=f"TensorFlow checkpoint {prefix.name} (White-box Cartoonization, CVPR 2020)",
        extra={"parameters": parameter_count(), "tensors": len(expected_shapes())},
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert, print what was written, exit 2 with a clear message on a bad checkpoint."""
    parser = argparse.ArgumentParser(prog="python -m runtime.cartoonizer.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="folder (or prefix) of the TF checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="model file to write (manifest.json goes beside it)")
    parser.add_argument("--name", help="model name recorded in the manifest (default: the output folder's name)")
    args = parser.parse_args(argv)
    try:
        path = convert(args.checkpoint, args.out, name=args.name)
    except (InputError, OSError) as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.with_name('manifest.json')} ({LICENCE}: non-commercial use only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
