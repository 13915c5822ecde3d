"""The API's settings (errors name the variable), its AWS backends' calls, and that the Lambda is stdlib + boto3."""

from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from runtime.web import contract
from runtime.web.api import backends as backends_module
from runtime.web.api import objects
from runtime.web.api.backends import AwsBackends
from runtime.web.settings import SettingsError, WebSettings

REPO = Path(__file__).resolve().parents[3]
REQUIRED = {
    contract.ENV_TABLE: "jobs",
    contract.ENV_OUTPUTS_BUCKET: "outputs",
    contract.ENV_IMAGE_FUNCTION: "image-fn",
    contract.ENV_VIDEO_ENDPOINT: "video-ep",
}


def test_defaults_and_page_config() -> None:
    settings = WebSettings.from_env(REQUIRED)
    assert not settings.generate_enabled and settings.max_image_bytes == 25_000_000
    config = settings.page_config(auth_endpoint="https://cognito-idp.us-east-1.amazonaws.com/", client_id="abc")
    assert config["limits"]["generate_sizes"] == [[512, 512], [768, 768], [512, 768], [768, 512]]
    assert config["generate_enabled"] is False and config["auth"]["local"] is False and config["api_base"] == "/api"
    small = WebSettings.from_env({**REQUIRED, contract.ENV_MAX_GENERATE_SIDE: "512"})
    assert small.generate_sizes == ((512, 512),)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({contract.ENV_TABLE: ""}, f"{contract.ENV_TABLE} is required"),
        ({contract.ENV_MAX_IMAGE_BYTES: "lots"}, f"{contract.ENV_MAX_IMAGE_BYTES} must be an integer"),
        ({contract.ENV_JOBS_PER_HOUR: "0"}, f"{contract.ENV_JOBS_PER_HOUR} must be >= 1"),
        ({contract.ENV_VIDEO_INVOCATION_TIMEOUT_S: "4000"}, contract.ENV_VIDEO_INVOCATION_TIMEOUT_S),
        ({contract.ENV_MAX_GENERATE_SIDE: "500"}, f"{contract.ENV_MAX_GENERATE_SIDE} must be a multiple of 8"),
        ({contract.ENV_GENERATE_SIZES: "512"}, contract.ENV_GENERATE_SIZES),
        ({contract.ENV_GENERATE_SIZES: "1024x1024"}, contract.ENV_GENERATE_SIZES),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        WebSettings.from_env({**REQUIRED, **env})


def _client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_aws_backends_invoke_lambda_async_and_sagemaker_async() -> None:
    lambda_client, runtime, sagemaker = _client("lambda"), _client("sagemaker-runtime"), _client("sagemaker")
    clock = [1000.0]
    backends = AwsBackends(
        image_function="image-fn",
        lambda_client=lambda_client,
        runtime_client=runtime,
        sagemaker_client=sagemaker,
        clock=lambda: clock[0],
    )
    manifest = {"input": "s3://b/in.png", "output": "s3://b/out.png", "options": {}}
    with Stubber(lambda_client) as lambdas, Stubber(runtime) as runtimes, Stubber(sagemaker) as describes:
        lambdas.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": "image-fn", "InvocationType": "Event", "Payload": json.dumps(manifest).encode()},
        )
        backends.start_image(manifest=manifest)
        runtimes.add_response(
            "invoke_endpoint_async",
            {
                "OutputLocation": "s3://b/out/1.out",
                "FailureLocation": "s3://b/failed/1-error.out",
                "InferenceId": "j-1",
            },
            {
                "EndpointName": "video-ep",
                "InputLocation": "s3://b/in.json",
                "ContentType": "application/json",
                "Accept": "application/json",
                "InferenceId": "j-1",
                "InvocationTimeoutSeconds": 3600,
            },
        )
        output = backends.start_async(
            endpoint="video-ep", input_location="s3://b/in.json", inference_id="j-1", timeout_s=3600
        )
        assert output == ("s3://b/out/1.out", "s3://b/failed/1-error.out")
        variant = {"VariantName": "AllTraffic", "CurrentInstanceCount": 0}
        describes.add_response(
            "describe_endpoint",
            {
                "EndpointName": "video-ep",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/video-ep",
                "EndpointConfigName": "c",
                "EndpointStatus": "InService",
                "CreationTime": "2026-01-01T00:00:00Z",
                "LastModifiedTime": "2026-01-01T00:00:00Z",
                "ProductionVariants": [variant],
            },
            {"EndpointName": "video-ep"},
        )
        assert backends.instance_count("video-ep") == 0
        assert backends.instance_count("video-ep") == 0  # cached: the stub holds no second answer
        describes.assert_no_pending_responses()
    with Stubber(sagemaker) as describes:
        describes.add_client_error("describe_endpoint", "AccessDeniedException")
        clock[0] += backends_module.INSTANCE_CACHE_S + 1
        assert backends.instance_count("video-ep") is None


def test_the_api_lambda_imports_only_stdlib_boto3_and_its_zip() -> None:
    """runtime.web.api imports nothing outside the files contract.CODE_ASSET_EXCLUDE keeps, plus stdlib and boto3."""
    script = """
import json, sys
blocked = ("pydantic", "fastapi", "starlette", "numpy", "torch", "PIL", "av", "onnxruntime", "moto", "httpx")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError("the API Lambda must not import " + name)
        return None
sys.meta_path.insert(0, Block())
import runtime.web.api.handler
files = sorted(
    m.__file__ for n, m in sys.modules.items() if n.startswith("runtime") and getattr(m, "__file__", None)
)
print(json.dumps(files))
"""
    answer = subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert answer.returncode == 0, answer.stderr
    root = REPO / contract.CODE_ASSET_DIR
    for path in json.loads(answer.stdout):
        relative = Path(path).relative_to(root).as_posix()
        kept = False
        for pattern in contract.CODE_ASSET_EXCLUDE:
            glob = pattern.removeprefix("!")
            # gitignore-like: a pattern without a slash matches the file name, one with a slash the whole path.
            if fnmatch.fnmatch(relative if "/" in glob else Path(relative).name, glob):
                kept = pattern.startswith("!")
        assert kept, f"{relative} is imported by the API Lambda but not in its zip (contract.CODE_ASSET_EXCLUDE)"


@pytest.mark.parametrize("status", [404, 403])
def test_missing_objects_read_as_absent_whether_s3_says_404_or_403(status: int) -> None:
    s3 = _client("s3")
    code = {404: "NoSuchKey", 403: "AccessDenied"}[status]
    with Stubber(s3) as stub:
        stub.add_client_error("head_object", str(status), http_status_code=status)
        stub.add_client_error("get_object", code, http_status_code=status)
        stub.add_client_error("get_object", "SlowDown", http_status_code=503)
        assert objects.head(s3, bucket="b", key="k") is None
        assert objects.read_text(s3, bucket="b", key="k") is None
        with pytest.raises(ClientError):
            objects.read_text(s3, bucket="b", key="k")


def test_web_keys_sit_under_the_prefixes_the_cartoonizer_and_diffusion_roles_can_reach() -> None:
    from runtime.cartoonizer import contract as cartoon
    from runtime.endpoint import contract as endpoint
    from runtime.endpoint.settings import Settings as EndpointSettings
    from runtime.web.api import models

    assert contract.UPLOADS_PREFIX.startswith(cartoon.INPUTS_PREFIX)
    assert contract.CARTOON_RESULTS_PREFIX.startswith(cartoon.RESULTS_PREFIX)
    assert contract.VIDEO_JOBS_PREFIX.startswith(cartoon.ASYNC_INPUT_PREFIX)
    assert contract.GENERATE_JOBS_PREFIX.startswith(endpoint.ASYNC_INPUT_PREFIX)
    assert contract.ENV_OUTPUTS_BUCKET == cartoon.ENV_OUTPUTS_BUCKET == endpoint.ENV_OUTPUTS_BUCKET
    # schemas imports diffusers (seconds); read its MAX_SEED from the source instead.
    source = (REPO / "runtime" / "endpoint" / "schemas.py").read_text()
    [seed] = [
        n.value for n in ast.parse(source).body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "MAX_SEED"
    ]
    assert eval(compile(ast.Expression(seed), "schemas.py", "eval")) == models.MAX_SEED
    assert EndpointSettings.from_env({}).max_prompt_chars == models.MAX_PROMPT_CHARS
