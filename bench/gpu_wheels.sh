#!/usr/bin/env bash
# Downloads the cp312 Linux wheels the GPU machine lacks (it has torch, transformers, onnx, onnxruntime,
# accelerate, pytest) into .whl/gpu/, pinned to this repository's lock, to carry with the device tool:
#   bash bench/gpu_wheels.sh && du -sh .whl/gpu   # must stay well under the 64 MiB carry limit
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.whl/gpu
rm -rf "$dest" && mkdir -p "$dest"
packages=(diffusers fastapi starlette uvicorn h11 pydantic pydantic_core pydantic-settings python-dotenv
  typing-inspection annotated-types anyio httpx httpcore idna sniffio certifi importlib-metadata zipp av)
pins=()
for name in "${packages[@]}"; do
  pin=$(grep -i -E "^${name//-/[-_]}==" constraints.txt || true)
  pins+=("${pin:-$name}")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  --dest "$dest" "${pins[@]}"
ls "$dest" | wc -l | xargs echo "wheels:"
du -sh "$dest"
