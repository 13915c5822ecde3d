"""`make web-local`: the web studio on 127.0.0.1 with emulated AWS services, tiny models and a sign-in stub.

python -m runtime.web.local [--port 8000] [--moto-port N] [--warmup-seconds 3] [--users FILE]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...common.jsonlog import configure_logging
from .. import contract
from ..api.handler import handler
from ..settings import SettingsError
from .auth import load_users
from .services import CARTOONIZER_MODEL, REGION, local_settings, local_studio

HOST = "127.0.0.1"
CLIENT_ID = "local-web-studio"
DUMMY_KEY = "local"  # moto accepts any keys; these are not credentials


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.web.local", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8000, help="port of the page and API (default 8000)")
    parser.add_argument("--moto-port", type=int, default=0, help="port of the S3/DynamoDB emulation (default: free)")
    parser.add_argument(
        "--warmup-seconds", type=float, default=3.0, help="async endpoints scale out from zero this long (default 3)"
    )
    parser.add_argument("--users", type=Path, help='JSON {"users": [{"username", "password"}]} (default: demo users)')
    parser.add_argument("--model", type=Path, help=f"cartoonizer model.onnx (default: {CARTOONIZER_MODEL} if present)")
    parser.add_argument("--static-dir", type=Path, default=Path(contract.STATIC_DIR), help="the page's files")
    parser.add_argument("--log-level", default="WARNING", help="JSON logs on stderr at this level (default WARNING)")
    return parser.parse_args(argv)


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _clients(endpoint: str) -> tuple[Any, Any]:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    session = boto3.session.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION)
    s3 = session.client(
        "s3", endpoint_url=endpoint, config=Config(signature_version="s3v4", s3={"addressing_style": "path"})
    )
    return s3, session.client("dynamodb", endpoint_url=endpoint)


def main(argv: Sequence[str] | None = None) -> int:
    """Start everything, print the URL and the users, serve until interrupted."""
    args = _parse(argv)
    configure_logging(level=args.log_level.upper())
    try:
        users = load_users(args.users)
        settings = local_settings()
    except (OSError, ValueError, SettingsError) as exc:
        print(f"web-local: {exc}", file=sys.stderr)
        return 2
    model = args.model or (CARTOONIZER_MODEL if CARTOONIZER_MODEL.is_file() else None)
    if args.model is not None and not args.model.is_file():
        print(f"web-local: no model at {args.model}", file=sys.stderr)
        return 2
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    moto_port = args.moto_port or free_port()
    moto_url = f"http://{HOST}:{moto_port}"
    # Anything that builds its own boto3 client talks to the emulation with dummy keys, never to AWS.
    os.environ.update(
        AWS_ACCESS_KEY_ID=DUMMY_KEY,
        AWS_SECRET_ACCESS_KEY=DUMMY_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=moto_url,
    )
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    from .auth import SignInStub  # noqa: PLC0415
    from .server import AUTH_PATH, make_server  # noqa: PLC0415

    base = f"http://{HOST}:{args.port}"
    auth = SignInStub(users=users, client_id=CLIENT_ID, issuer=base + AUTH_PATH.rstrip("/"))
    page_config = settings.page_config(auth_endpoint=AUTH_PATH, client_id=CLIENT_ID, local=True)
    apps: dict[str, Any] = {}

    def api(event: dict[str, Any]) -> dict[str, Any]:
        return handler(event, None, app=apps["app"])

    try:
        # Bind first: a port in use fails at once, before minutes of model loading.
        server = make_server(
            host=HOST, port=args.port, static_dir=args.static_dir, page_config=page_config, auth=auth, api=api
        )
    except OSError as exc:
        print(f"web-local: cannot listen on {HOST}:{args.port}: {exc} (choose another with --port)", file=sys.stderr)
        return 2
    moto = ThreadedMotoServer(ip_address=HOST, port=moto_port, verbose=False)
    moto.start()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    s3, dynamodb = _clients(moto_url)
    try:
        with local_studio(
            s3=s3,
            dynamodb=dynamodb,
            settings=settings,
            cartoonizer_model=model,
            warmup_s=args.warmup_seconds,
            log_level=args.log_level.upper(),
        ) as studio:
            apps["app"] = studio.app

            def stop(_signal: int, _frame: Any) -> None:
                threading.Thread(target=server.shutdown, daemon=True).start()

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            print(f"S3 and DynamoDB emulation (moto): {moto_url}", flush=True)
            print(f"cartoonizer model: {model or 'random weights (no models/cartoonizer/model.onnx)'}", flush=True)
            print("users (local only): " + ", ".join(f"{u.username} / {u.password}" for u in users), flush=True)
            print(f"web studio: {base}/", flush=True)
            server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        moto.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
