"""End-to-end HTTP benchmark of the Stable Diffusion endpoint against the original sample container's settings.

Both servers are the real `serve` entry point started as subprocesses on a random-weight pipeline (SD 1.5
architecture by default, nothing downloaded); the clients go through HTTP like SageMaker does.

  baseline   fp32, default scheduler, one request at a time, no compile, no channels_last (the sample container)
  optimized  fp16, SDPA, channels_last, torch.compile, dynamic batching (this repository's defaults on GPU)

Reports p50/p90 single-request latency, images/s under concurrent load, and time to healthy (cold, and warm
compile cache for the optimized server). GPU:  python bench/diffusion_bench.py --device cuda
CPU proof with the tiny pipeline:            python bench/diffusion_bench.py --tiny

--startup measures only time to healthy of a compiled server on a new instance: cold (nothing cached) versus
with the compile cache an earlier instance saved to S3 (a local moto S3 server stands in for the models bucket;
each start gets an empty local cache directory, as a new SageMaker instance does):
    python bench/diffusion_bench.py --tiny --startup        (CPU)
    python bench/diffusion_bench.py --startup               (GPU, SD 1.5 architecture)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass
class ServerRun:
    """Measurements of one server configuration."""

    name: str
    env: dict[str, str]
    healthy_cold_s: float = 0.0
    healthy_warm_s: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    load_images: int = 0
    load_wall_s: float = 0.0
    server_metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Numbers for the report."""
        lat = sorted(self.latencies_s)
        return {
            "name": self.name,
            "p50_s": statistics.median(lat) if lat else None,
            "p90_s": lat[min(len(lat) - 1, int(0.9 * len(lat)))] if lat else None,
            "images_per_s": self.load_images / self.load_wall_s if self.load_wall_s else None,
            "healthy_cold_s": self.healthy_cold_s,
            "healthy_warm_s": self.healthy_warm_s,
            "batches": self.server_metrics.get("batches"),
            "max_batch_images": self.server_metrics.get("max_batch_images"),
            "multi_request_batches": self.server_metrics.get("multi_request_batches"),
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`python -m runtime.endpoint.serve` in a subprocess, logging to a file."""

    def __init__(self, *, model_dir: Path, device: str, env: dict[str, str], log_path: Path) -> None:
        """Remember how to start it."""
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._cmd = [sys.executable, "-m", "runtime.endpoint.serve", "--model-dir", str(model_dir)]
        self._cmd += ["--port", str(self.port), "--device", device, "--host", "127.0.0.1"]
        self._env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start_and_wait_healthy(self, timeout: float) -> float:
        """Start the server and return seconds from process start until /ping answers 200."""
        log = self._log_path.open("ab")
        started = time.perf_counter()
        self._proc = subprocess.Popen(self._cmd, cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT)
        deadline = started + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self._proc.returncode}; see {self._log_path}")
                try:
                    if client.get(f"{self.url}/ping").status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not healthy within {timeout:.0f} s; see {self._log_path}")

    def stop(self) -> None:
        """Terminate the server (this process's own child only)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None


async def _latencies(url: str, payload: dict[str, Any], *, count: int, warmup: int) -> list[float]:
    async with httpx.AsyncClient(timeout=600.0) as client:
        results = []
        for index in range(warmup + count):
            started = time.perf_counter()
            response = await client.post(f"{url}/invocations", json={**payload, "seed": index})
            elapsed = time.perf_counter() - started
            response.raise_for_status()
            if index >= warmup:
                results.append(elapsed)
        return results


async def _load(url: str, payload: dict[str, Any], *, concurrency: int, requests: int) -> tuple[int, float]:
    """Send `requests` single-image requests from `concurrency` clients; return (images, wall seconds)."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)
    images = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal images
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            response = await client.post(f"{url}/invocations", json={**payload, "seed": 1000 + index})
            if response.status_code == 429:  # queue full: back off and retry, as a real client would
                queue.put_nowait(index)
                await asyncio.sleep(0.05)
                continue
            response.raise_for_status()
            images += len(response.json()["images"])

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=600.0, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        return images, time.perf_counter() - started


def _prepare_model(preset: str, workdir: Path) -> Path:
    from runtime.endpoint.tiny_pipeline import save_random_pipeline  # noqa: PLC0415

    model_dir = workdir / f"model-{preset}"
    if not (model_dir / "model_index.json").is_file():
        print(f"building random {preset} pipeline in {model_dir} ...", flush=True)
        save_random_pipeline(model_dir, preset=preset, seed=0)
    return model_dir


def run_config(
    run: ServerRun, *, args: argparse.Namespace, model_dir: Path, workdir: Path, restart_warm: bool
) -> ServerRun:
    """Start the server (twice when measuring the warm compile cache) and measure it."""
    log_path = workdir / f"{run.name}.log"
    payload = {
        "prompt": "a photo of an astronaut riding a horse on the moon",
        "num_inference_steps": args.steps,
        "width": args.size,
        "height": args.size,
        "guidance_scale": 7.5,
    }
    server = ServerProcess(model_dir=model_dir, device=args.device, env=run.env, log_path=log_path)
    try:
        run.healthy_cold_s = server.start_and_wait_healthy(args.start_timeout)
        print(f"[{run.name}] healthy (cold) after {run.healthy_cold_s:.1f} s", flush=True)
        if restart_warm:
            server.stop()
            run.healthy_warm_s = server.start_and_wait_healthy(args.start_timeout)
            print(f"[{run.name}] healthy (warm compile cache) after {run.healthy_warm_s:.1f} s", flush=True)
        run.latencies_s = asyncio.run(_latencies(server.url, payload, count=args.latency_requests, warmup=2))
        print(f"[{run.name}] single-request p50 {statistics.median(run.latencies_s):.3f} s", flush=True)
        run.load_images, run.load_wall_s = asyncio.run(
            _load(server.url, payload, concurrency=args.concurrency, requests=args.load_requests)
        )
        print(f"[{run.name}] {run.load_images / run.load_wall_s:.2f} images/s under load", flush=True)
        run.server_metrics = httpx.get(f"{server.url}/metrics", timeout=10).json()
    finally:
        server.stop()
    return run


def _startup_run(args: argparse.Namespace, *, model_dir: Path, workdir: Path) -> dict[str, Any]:
    """Time to healthy of a compiled server: cold, then a new instance with the compile cache from S3."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    s3_env = {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        import boto3  # noqa: PLC0415

        s3 = boto3.client(
            "s3",
            endpoint_url=s3_env["AWS_ENDPOINT_URL_S3"],
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        s3.create_bucket(Bucket="models")
        env = {
            **s3_env,
            "GENART_COMPILE": "1",
            "GENART_COMPILE_MODE": args.compile_mode,
            "GENART_DTYPE": "fp16",
            "GENART_SIZES": f"{args.size}x{args.size}",
            "GENART_MAX_SIDE": str(max(args.size, 64)),
            "GENART_MAX_IMAGES": "1",
            "GENART_MAX_BATCH": "1",
            "GENART_WARMUP_BATCHES": "1",
            "GENART_SAFETY_CHECKER": "0",
            "GENART_COMPILE_CACHE_S3_URI": "s3://models/diffusion-compile-cache/bench/",
        }
        if args.threads:
            env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        results: dict[str, Any] = {}
        # Every instance uses the same cache path (GENART_COMPILE_CACHE_DIR); a new instance starts with it empty.
        cache_dir = workdir / "startup-compile-cache"
        for name in ("cold", "s3_cache"):
            shutil.rmtree(cache_dir, ignore_errors=True)
            server = ServerProcess(
                model_dir=model_dir,
                device=args.device,
                env={**env, "GENART_COMPILE_CACHE_DIR": str(cache_dir)},
                log_path=workdir / f"startup-{name}.log",
            )
            try:
                results[f"healthy_{name}_s"] = server.start_and_wait_healthy(args.start_timeout)
                print(f"[startup] {name}: healthy after {results[f'healthy_{name}_s']:.1f} s", flush=True)
                response = httpx.post(
                    f"{server.url}/invocations",
                    json={"prompt": "a red cat", "width": args.size, "height": args.size, "num_inference_steps": 2},
                    timeout=600,
                )
                response.raise_for_status()
                deadline = time.perf_counter() + 600
                while name == "cold" and not s3.list_objects_v2(Bucket="models").get("KeyCount"):
                    if time.perf_counter() > deadline:
                        raise TimeoutError("the cold server never uploaded its compile cache")
                    time.sleep(0.5)
            finally:
                server.stop()
        objects = s3.list_objects_v2(Bucket="models").get("Contents", [])
        results["cache_objects"] = [(item["Key"], item["Size"]) for item in objects]
    finally:
        moto.stop()
    results["ratio_cold_over_s3"] = results["healthy_cold_s"] / results["healthy_s3_cache_s"]
    return results


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random pipeline on CPU, few steps (proof run)")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 50; 4 with --tiny)")
    parser.add_argument("--size", type=int, default=None, help="image side (default 512; 64 with --tiny)")
    parser.add_argument("--latency-requests", type=int, default=None, help="sequential requests for p50")
    parser.add_argument("--load-requests", type=int, default=None, help="requests in the load phase")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients in the load phase")
    parser.add_argument("--max-batch", type=int, default=8, help="optimized server's GENART_MAX_BATCH")
    parser.add_argument("--compile-mode", default="reduce-overhead", help="optimized server's GENART_COMPILE_MODE")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="auto: on for cuda")
    parser.add_argument("--start-timeout", type=float, default=3600.0, help="seconds to wait for /ping")
    parser.add_argument("--threads", type=int, default=None, help="servers' OMP/torch CPU threads (1 with --tiny)")
    parser.add_argument("--workdir", type=Path, default=None, help="model + cache + logs (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    parser.add_argument("--startup", action="store_true", help="only time to healthy: cold vs S3 compile cache")
    args = parser.parse_args(argv)
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    args.steps = args.steps or (4 if args.tiny else 50)
    args.size = args.size or (64 if args.tiny else 512)
    args.latency_requests = args.latency_requests or (10 if args.tiny else 20)
    args.load_requests = args.load_requests or (48 if args.tiny else 128)
    args.threads = args.threads or (1 if args.tiny else None)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run baseline and optimized servers and print a report."""
    args = _parse(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    preset = "tiny" if args.tiny else "sd15"
    model_dir = _prepare_model(preset, workdir)
    if args.startup:
        startup = {
            "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "preset": preset,
            "device": args.device,
            "size": args.size,
            "cpu_count": os.cpu_count(),
            "gpu": _gpu_name(args.device),
            **_startup_run(args, model_dir=model_dir, workdir=workdir),
        }
        print(json.dumps(startup, indent=2))
        if args.json:
            args.json.write_text(json.dumps(startup, indent=2))
        return 0
    compile_on = args.compile == "on" or (args.compile == "auto" and args.device.startswith("cuda"))
    cache_dir = workdir / "compile-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    common = {
        "GENART_MAX_SIDE": str(max(args.size, 64)),
        "GENART_MAX_STEPS": str(max(args.steps, 1)),
        "GENART_WARMUP_SIZES": str(args.size),
        "GENART_MAX_QUEUE": str(max(64, args.concurrency * 2)),
        "GENART_SAFETY_CHECKER": "0",
    }
    if args.threads:
        # The tiny model gains nothing from more threads; on a shared CPU they only spin against each other.
        common |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    baseline = ServerRun(
        name="baseline",
        env={
            **common,
            "GENART_DTYPE": "fp32",
            "GENART_COMPILE": "0",
            "GENART_CHANNELS_LAST": "0",
            "GENART_FUSE_QKV": "0",
            "GENART_MAX_BATCH": "1",
            "GENART_BATCH_WINDOW_MS": "0",
            "GENART_WARMUP_BATCHES": "1",
        },
    )
    optimized = ServerRun(
        name="optimized",
        env={
            **common,
            "GENART_DTYPE": "fp16",
            "GENART_COMPILE": "1" if compile_on else "0",
            "GENART_COMPILE_MODE": args.compile_mode,
            "GENART_COMPILE_CACHE_DIR": str(cache_dir),
            "GENART_CHANNELS_LAST": "1",
            "GENART_MAX_BATCH": str(args.max_batch),
            "GENART_BATCH_WINDOW_MS": "20",
            "GENART_WARMUP_BATCHES": ",".join(str(b) for b in (1, 2, 4, 8, 16) if b <= args.max_batch),
        },
    )
    run_config(baseline, args=args, model_dir=model_dir, workdir=workdir, restart_warm=False)
    run_config(optimized, args=args, model_dir=model_dir, workdir=workdir, restart_warm=True)
    base, opt = baseline.summary(), optimized.summary()
    report = {
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": _gpu_name(args.device),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "preset": preset,
        "device": args.device,
        "steps": args.steps,
        "size": args.size,
        "concurrency": args.concurrency,
        "compile": compile_on,
        "compile_mode": args.compile_mode if compile_on else None,
        "baseline": base,
        "optimized": opt,
        "p50_speedup": base["p50_s"] / opt["p50_s"],
        "throughput_ratio": opt["images_per_s"] / base["images_per_s"],
        "runs": {"baseline": asdict(baseline), "optimized": asdict(optimized)},
    }
    print(_markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch  # noqa: PLC0415

    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


def _markdown(report: dict[str, Any]) -> str:
    base, opt = report["baseline"], report["optimized"]

    def fmt(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"date {report['date_utc']}  device {report['device']}  gpu {report['gpu']}  cpus {report['cpu_count']}",
        f"preset {report['preset']}  {report['size']}x{report['size']}  {report['steps']} steps  "
        f"concurrency {report['concurrency']}  compile {report['compile_mode'] or 'off'}",
        "",
        "| server | p50 s | p90 s | images/s (load) | healthy cold s | healthy warm-cache s | max batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in (base, opt):
        lines.append(
            f"| {row['name']} | {fmt(row['p50_s'])} | {fmt(row['p90_s'])} | {fmt(row['images_per_s'], 2)} | "
            f"{fmt(row['healthy_cold_s'], 1)} | {fmt(row['healthy_warm_s'], 1)} | {row['max_batch_images']} |"
        )
    lines.append("")
    lines.append(
        f"p50 speed-up {report['p50_speedup']:.2f}x, throughput ratio {report['throughput_ratio']:.2f}x vs baseline"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
