#!/usr/bin/env bash
# The one prepared GPU run (device tool, one NVIDIA GPU): priority order, every result written as JSON
# under $OUT the moment it exists, each step under its own time limit so a timeout loses nothing earlier.
#   On the GPU machine:  bash bench/gpu_suite.sh            (carry .whl/gpu from bench/gpu_wheels.sh)
#   CPU proof here:      OUT=/tmp/gpu-suite bash bench/gpu_suite.sh --tiny
# Budget on the GPU: under 9 minutes of wall time in all (see the per-step limits below).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the results folder}
mkdir -p "$OUT"
TINY=0
[[ "${1:-}" == "--tiny" ]] && TINY=1
PY=${PYTHON:-python3}
[[ -x .venv/bin/python && $TINY == 1 ]] && PY=.venv/bin/python
SUMMARY="$OUT/summary.jsonl"
: > "$SUMMARY"

record() {  # record STEP RC SECONDS [NOTE]: one JSON line per finished step, appended at once
  printf '{"step": "%s", "rc": %s, "seconds": %s, "note": "%s"}\n' "$1" "$2" "$3" "${4:-}" >> "$SUMMARY"
}

step() {  # step NAME LIMIT_S COMMAND...: run with a time limit, keep its log, record the outcome
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  record "$name" "$rc" "$((SECONDS - start))" "$([[ $rc == 124 ]] && echo "timed out after ${limit}s")"
  echo "[gpu-suite] $name rc=$rc in $((SECONDS - start))s"
}

# 0. What ran: the machine, torch and the versions the lock pins (the note names any mismatch).
if [[ $TINY == 0 && -d .whl/gpu ]]; then
  step install 120 "$PY" -m pip install --no-index --find-links .whl/gpu --quiet \
    diffusers fastapi uvicorn pydantic-settings httpx av
fi
step environment 60 "$PY" - "$OUT/environment.json" <<'PYEOF'
import json, platform, subprocess, sys
import torch
lock = {}
for line in open("constraints.txt"):
    if "==" in line and not line.startswith("#"):
        name, version = line.strip().split("==", 1)
        lock[name.lower().replace("_", "-")] = version
facts = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "torch_cuda": torch.version.cuda,
    "cuda_available": torch.cuda.is_available(),
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    "lock_torch": lock.get("torch"),
}
for name in ("diffusers", "transformers", "onnxruntime", "fastapi", "pydantic"):
    try:
        module = __import__(name)
        facts[name] = getattr(module, "__version__", "?")
        facts[f"lock_{name}"] = lock.get(name)
    except ImportError:
        facts[name] = None
try:
    facts["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                          "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    facts["nvidia_smi"] = None
json.dump(facts, open(sys.argv[1], "w"), indent=2)
print(json.dumps(facts))
PYEOF

# a. The GPU-marked tests (they skip on a CPU machine, which the proof run shows).
step gpu-tests 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu --junitxml "$OUT/gpu-tests.xml"

# b. Stable Diffusion 1.5 architecture (random weights built in the run) through the HTTP server:
#    fp32 one-at-a-time baseline vs the optimized server, p50, images/s under load, time to healthy
#    cold and with the compile cache restored.
if [[ $TINY == 1 ]]; then
  step diffusion 300 "$PY" bench/diffusion_bench.py --tiny --json "$OUT/diffusion.json"
else
  step diffusion 330 "$PY" bench/diffusion_bench.py --device cuda --latency-requests 5 --load-requests 32 \
    --json "$OUT/diffusion.json"
fi

# c. StyleGAN2 paper256: training s/kimg (optimized vs fp32 eager, same run) and generator img/s.
if [[ $TINY == 1 ]]; then
  step stylegan2 240 "$PY" bench/stylegan2_bench.py --tiny --device cpu --json-out "$OUT/stylegan2.json"
else
  step stylegan2 150 "$PY" bench/stylegan2_bench.py --device cuda --rounds 3 --json-out "$OUT/stylegan2.json"
fi

# d. The cartoonizer's 10 s 1280x720 30 fps clip with AAC audio end to end (decode + infer + encode), random
#    weights built in the run; target <= 2 s on one H200. Needs PyAV (carried wheel) and an onnxruntime with the
#    CUDA provider (onnxruntime-gpu): without it the step fails at once saying so, and nothing is measured.
if [[ $TINY == 1 ]]; then
  step cartoonizer 120 "$PY" bench/cartoonizer_bench.py --tiny --json "$OUT/cartoonizer.json"
else
  step cartoonizer 150 "$PY" bench/cartoonizer_bench.py --device cuda --clip-seconds 10 --fps 30 \
    --json "$OUT/cartoonizer.json"
fi
echo "[gpu-suite] done; results in $OUT"
