"""The web studio's intent: a private page bucket only CloudFront reads (origin access control), a JWT authorizer on
every API route, an API function with exactly the access its jobs need, a jobs table that expires and recovers, a
strict CSP, invited users only by default, CORS for presigned links, and a budget that notifies the ops topic."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.config import load_config
from runtime.cartoonizer import contract as cartoonizer_contract
from runtime.endpoint import contract as diffusion_contract
from runtime.web import contract
from tests.infra.intrinsics import as_list, render, value_of
from tests.infra.synth import (
    SynthesizedApp,
    SynthesizedStack,
    opt_in_app,
    resources_of_type,
    synth_config,
    synth_env,
)

ENVS = ["dev", "prod"]
# Managed CloudFront policies (their ids are fixed by AWS).
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"


def _ref(logical_id: str, attribute: str = "") -> str:
    """How render() spells a reference to a resource of the same stack."""
    return "${" + logical_id + (f".{attribute}" if attribute else "") + "}"


def _cartoonizer(app: SynthesizedApp) -> SynthesizedStack:
    return app.by_name[app.stacks.cartoonizer.stack_name]


def _storage(app: SynthesizedApp) -> SynthesizedStack:
    return app.by_name[app.stacks.storage.stack_name]


def _one(stack: SynthesizedStack, cfn_type: str) -> tuple[str, dict[str, Any]]:
    ((logical_id, resource),) = resources_of_type(stack.json, cfn_type).items()
    return logical_id, resource


@functools.cache
def _switched_off() -> SynthesizedApp:
    """An env with the studio and the budget turned off."""
    envs = {"off": {"storage": {"budget": {"enabled": False}}, "cartoonizer": {"web": {"enabled": False}}}}
    return synth_config(load_config(envs, "off"))


def _distribution(stack: SynthesizedStack) -> dict[str, Any]:
    _, distribution = _one(stack, "AWS::CloudFront::Distribution")
    return distribution["Properties"]["DistributionConfig"]  # type: ignore[no-any-return]


def _api_statements(stack: SynthesizedStack) -> list[dict[str, Any]]:
    (role_id,) = [k for k in resources_of_type(stack.json, "AWS::IAM::Role") if k.startswith("StudioApiRole")]
    return [
        statement
        for policy in resources_of_type(stack.json, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _image_function(stack: SynthesizedStack) -> str:
    """Logical id of the Cartoonizer's image function."""
    (logical_id,) = [k for k in resources_of_type(stack.json, "AWS::Lambda::Function") if k.startswith("Images")]
    return logical_id


def _function(stack: SynthesizedStack) -> dict[str, Any]:
    (function,) = [
        f["Properties"]
        for k, f in resources_of_type(stack.json, "AWS::Lambda::Function").items()
        if k.startswith("StudioApiFunction")
    ]
    return function


@pytest.mark.parametrize("env_name", ENVS)
def test_page_is_served_from_a_private_bucket_through_origin_access_control(env_name: str) -> None:
    stack = _cartoonizer(synth_env(env_name))
    oac_id, oac = _one(stack, "AWS::CloudFront::OriginAccessControl")
    assert oac["Properties"]["OriginAccessControlConfig"] | {"Name": None} == {
        "Name": None,
        "OriginAccessControlOriginType": "s3",
        "SigningBehavior": "always",
        "SigningProtocol": "sigv4",
    }
    assert not resources_of_type(stack.json, "AWS::CloudFront::CloudFrontOriginAccessIdentity")
    config = _distribution(stack)
    (page_origin,) = [o for o in config["Origins"] if "S3OriginConfig" in o]
    bucket_id, bucket = _one(stack, "AWS::S3::Bucket")
    assert page_origin["DomainName"] == {"Fn::GetAtt": [bucket_id, "RegionalDomainName"]}
    assert page_origin["OriginAccessControlId"] == {"Fn::GetAtt": [oac_id, "Id"]}
    assert page_origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    default = config["DefaultCacheBehavior"]
    assert default["TargetOriginId"] == page_origin["Id"]
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["DefaultRootObject"] == "index.html"
    assert bucket["Properties"]["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    logging = bucket["Properties"]["LoggingConfiguration"]
    assert logging["LogFilePrefix"] == "web-page/"
    app = synth_env(env_name)
    storage = app.stacks.storage
    assert render(logging["DestinationBucketName"], app) == value_of(
        storage, storage.access_logs_bucket.bucket_name, app
    )


@pytest.mark.parametrize("env_name", ENVS)
def test_only_cloudfront_for_this_distribution_reads_the_page_bucket(env_name: str) -> None:
    stack = _cartoonizer(synth_env(env_name))
    bucket_id, _ = _one(stack, "AWS::S3::Bucket")
    distribution_id, _ = _one(stack, "AWS::CloudFront::Distribution")
    _, policy = _one(stack, "AWS::S3::BucketPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    (reader,) = [s for s in allows if s["Principal"] != {"AWS": {"Fn::GetAtt": [_auto_delete_role(stack), "Arn"]}}]
    assert reader["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert reader["Action"] == "s3:GetObject"
    assert reader["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}
    (source,) = reader["Condition"]["StringEquals"].values()
    assert list(reader["Condition"]) == ["StringEquals"] and list(reader["Condition"]["StringEquals"]) == [
        "AWS:SourceArn"
    ]
    assert source == {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":cloudfront::",
                {"Ref": "AWS::AccountId"},
                ":distribution/",
                {"Ref": distribution_id},
            ],
        ]
    }
    # The only other Allow: CDK's auto-delete provider (the page is rebuilt on each deploy), deleting objects.
    (deleter,) = [s for s in allows if s is not reader]
    assert sorted(deleter["Action"]) == ["s3:DeleteObject*", "s3:GetBucket*", "s3:List*", "s3:PutBucketPolicy"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert {json.dumps(s["Condition"], sort_keys=True) for s in denies} == {
        '{"Bool": {"aws:SecureTransport": "false"}}',
        '{"NumericLessThan": {"s3:TlsVersion": 1.2}}',
    }


def _auto_delete_role(stack: SynthesizedStack) -> str:
    (role_id,) = [k for k in resources_of_type(stack.json, "AWS::IAM::Role") if k.startswith("CustomS3AutoDelete")]
    return role_id


@pytest.mark.parametrize("env_name", ENVS)
def test_api_behaviour_forwards_the_token_and_never_caches(env_name: str) -> None:
    stack = _cartoonizer(synth_env(env_name))
    config = _distribution(stack)
    (behaviour,) = config["CacheBehaviors"]
    assert behaviour["PathPattern"] == "/api/*"
    assert behaviour["CachePolicyId"] == CACHING_DISABLED
    assert behaviour["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert sorted(behaviour["AllowedMethods"]) == sorted(["GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"])
    assert behaviour["ViewerProtocolPolicy"] == "https-only"
    (origin,) = [o for o in config["Origins"] if o["Id"] == behaviour["TargetOriginId"]]
    api_id, _ = _one(stack, "AWS::ApiGatewayV2::Api")
    assert origin["DomainName"] == {"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": [api_id, "ApiEndpoint"]}]}]}
    assert origin["CustomOriginConfig"] == {"OriginProtocolPolicy": "https-only", "OriginSSLProtocols": ["TLSv1.2"]}


@pytest.mark.parametrize("env_name", ENVS)
def test_every_route_needs_a_token_from_the_studios_user_pool(env_name: str) -> None:
    stack = _cartoonizer(synth_env(env_name))
    routes = [r["Properties"] for r in resources_of_type(stack.json, "AWS::ApiGatewayV2::Route").values()]
    assert sorted(r["RouteKey"] for r in routes) == sorted(contract.ROUTES)
    authorizer_id, authorizer = _one(stack, "AWS::ApiGatewayV2::Authorizer")
    for route in routes:
        assert route["AuthorizationType"] == "JWT", route
        assert route["AuthorizerId"] == {"Ref": authorizer_id}
    pool_id, _ = _one(stack, "AWS::Cognito::UserPool")
    client_id, _ = _one(stack, "AWS::Cognito::UserPoolClient")
    properties = authorizer["Properties"]
    assert properties["AuthorizerType"] == "JWT"
    assert properties["IdentitySource"] == ["$request.header.Authorization"]
    # Exactly the `iss` claim of the pool's tokens (the authorizer compares strings).
    jwt = properties["JwtConfiguration"]
    assert (
        render(jwt["Issuer"], synth_env(env_name))
        == f"https://cognito-idp.${{AWS::Region}}.amazonaws.com/{_ref(pool_id)}"
    )
    assert jwt["Audience"] == [{"Ref": client_id}]
    (integration,) = resources_of_type(stack.json, "AWS::ApiGatewayV2::Integration").values()
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"


@pytest.mark.parametrize("env_name", ENVS)
def test_api_function_has_exactly_the_access_its_jobs_need(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(app)
    storage = app.stacks.storage
    outputs = value_of(storage, storage.outputs_bucket.bucket_arn, app)

    def ids(prefix: str) -> str:
        (logical_id,) = [k for k in stack.json["Resources"] if k.startswith(prefix)]
        return logical_id

    endpoint = "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/"
    video = app.stacks.cartoonizer.videos.endpoint_name
    diffusion = app.stacks.diffusion.endpoint.endpoint_name
    reads = [
        contract.UPLOADS_PREFIX,
        contract.CARTOON_RESULTS_PREFIX,
        cartoonizer_contract.ASYNC_OUTPUT_PREFIX,
        cartoonizer_contract.ASYNC_FAILURE_PREFIX,
        diffusion_contract.OUTPUTS_PREFIX,
        diffusion_contract.ASYNC_OUTPUT_PREFIX,
        diffusion_contract.ASYNC_FAILURE_PREFIX,
    ]
    writes = [contract.UPLOADS_PREFIX, contract.VIDEO_JOBS_PREFIX, contract.GENERATE_JOBS_PREFIX]
    granted = {
        (action, render(resource, app))
        for statement in _api_statements(stack)
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    assert granted == {
        ("logs:CreateLogStream", _ref(ids("StudioApiLogs"), "Arn")),
        ("logs:PutLogEvents", _ref(ids("StudioApiLogs"), "Arn")),
        *((f"dynamodb:{a}", _ref(ids("StudioApiJobs"), "Arn")) for a in ("GetItem", "PutItem", "UpdateItem", "Query")),
        *(("s3:PutObject", f"{outputs}/{prefix}*") for prefix in writes),
        *(("s3:GetObject", f"{outputs}/{prefix}*") for prefix in reads),
        ("s3:ListBucket", outputs),
        ("lambda:InvokeFunction", _ref(_image_function(stack), "Arn")),
        *(
            (action, endpoint + name)
            for action in ("sagemaker:InvokeEndpointAsync", "sagemaker:DescribeEndpoint")
            for name in (video, diffusion)
        ),
    }
    statements = _api_statements(stack)
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in reads]}}
    assert all(s["Effect"] == "Allow" and "Condition" not in s for s in statements if s is not listing)
    # Uploads and job inputs land where the runtimes already read: the image function and the video endpoint read
    # the cartoonizer's inputs, both async endpoints their async input prefix.
    assert contract.UPLOADS_PREFIX.startswith(cartoonizer_contract.INPUTS_PREFIX)
    assert contract.CARTOON_RESULTS_PREFIX.startswith(cartoonizer_contract.RESULTS_PREFIX)
    assert contract.VIDEO_JOBS_PREFIX.startswith(cartoonizer_contract.ASYNC_INPUT_PREFIX)
    assert contract.GENERATE_JOBS_PREFIX.startswith(diffusion_contract.ASYNC_INPUT_PREFIX)


@pytest.mark.parametrize("env_name", ENVS)
def test_image_jobs_the_studio_starts_are_never_retried_or_run_after_it_gave_up(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(app)
    image_function = _image_function(stack)
    _, config = _one(stack, "AWS::Lambda::EventInvokeConfig")
    properties = config["Properties"]
    assert properties["FunctionName"] == {"Ref": image_function}
    assert properties["MaximumRetryAttempts"] == 0
    assert properties["MaximumEventAgeInSeconds"] == app.config.cartoonizer.web.stale_after_seconds


def test_a_realtime_diffusion_endpoint_turns_generate_off() -> None:
    app = opt_in_app()
    assert app.config.diffusion.mode == "realtime"
    stack = _cartoonizer(app)
    assert _function(stack)["Environment"]["Variables"][contract.ENV_DIFFUSION_ENDPOINT] == ""
    text = json.dumps(_api_statements(stack))
    assert "diffusion" not in text and app.stacks.diffusion.endpoint.endpoint_name not in text
    assert _page_config(app)["generate_enabled"] is False


@pytest.mark.parametrize("env_name", ENVS)
def test_api_function_runs_the_web_handler_with_the_contract_settings(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(app)
    config = app.config.cartoonizer
    web = config.web
    function = _function(stack)
    assert (function["Runtime"], function["Architectures"], function["Handler"]) == (
        "python3.11",
        ["arm64"],
        "runtime.web.api.handler.handler",
    )
    assert function.get("ReservedConcurrentExecutions") == web.api_reserved_concurrency
    assert web.api_reserved_concurrency == (10 if env_name == "prod" else None)
    storage = app.stacks.storage
    (table_id,) = [k for k in stack.json["Resources"] if k.startswith("StudioApiJobs")]
    image_function = _image_function(stack)
    environment = {k: render(v, app) for k, v in function["Environment"]["Variables"].items()}
    assert environment == {
        contract.ENV_TABLE: _ref(table_id),
        contract.ENV_OUTPUTS_BUCKET: value_of(storage, storage.outputs_bucket.bucket_name, app),
        contract.ENV_IMAGE_FUNCTION: _ref(image_function),
        contract.ENV_VIDEO_ENDPOINT: f"genart-{env_name}-cartoon-g4dn-xlarge",
        contract.ENV_VIDEO_INVOCATION_TIMEOUT_S: str(config.video.invocation_timeout_seconds),
        contract.ENV_DIFFUSION_ENDPOINT: f"genart-{env_name}-sd-async-g5-xlarge",
        contract.ENV_MAX_IMAGE_BYTES: str(config.image.max_bytes),
        contract.ENV_MAX_VIDEO_BYTES: str(web.max_video_bytes),
        contract.ENV_UPLOADS_PER_HOUR: str(web.uploads_per_hour),
        contract.ENV_JOBS_PER_HOUR: str(web.jobs_per_hour),
        contract.ENV_IMAGES_PER_HOUR: str(web.images_per_hour),
        contract.ENV_MAX_GENERATE_SIDE: str(web.max_generate_side),
        contract.ENV_GENERATE_SIZES: "512x512,768x768,512x768,768x512",
        contract.ENV_MAX_GENERATE_STEPS: str(web.max_generate_steps),
        contract.ENV_MAX_GENERATE_IMAGES: str(web.max_generate_images),
        contract.ENV_LINK_EXPIRY_S: str(web.link_expiry_seconds),
        contract.ENV_JOB_TTL_DAYS: str(web.job_ttl_days),
        contract.ENV_STALE_AFTER_S: str(web.stale_after_seconds),
        contract.ENV_LICENCE: web.licence,
        contract.ENV_LOG_LEVEL: "INFO",
    }
    every_env_var = {v for k, v in vars(contract).items() if k.startswith("ENV_")}
    assert set(environment) == every_env_var
    group = function["LoggingConfig"]["LogGroup"]["Ref"]
    assert stack.json["Resources"][group]["Properties"]["RetentionInDays"] == config.log_retention_days


@pytest.mark.parametrize("env_name", ENVS)
def test_stage_is_throttled_and_logs_every_request(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(app)
    _, stage = _one(stack, "AWS::ApiGatewayV2::Stage")
    properties = stage["Properties"]
    web = app.config.cartoonizer.web
    assert properties["StageName"] == "$default" and properties["AutoDeploy"] is True
    assert properties["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": web.api_throttle_burst,
        "ThrottlingRateLimit": web.api_throttle_rate_per_second,
    }
    group = properties["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert stack.json["Resources"][group]["Properties"]["RetentionInDays"] == app.config.cartoonizer.log_retention_days
    assert json.loads(properties["AccessLogSettings"]["Format"])["user"] == "$context.authorizer.claims.sub"


@pytest.mark.parametrize("env_name", ENVS)
def test_jobs_table_is_on_demand_expires_records_and_recovers(env_name: str) -> None:
    app = synth_env(env_name)
    _, table = _one(_cartoonizer(app), "AWS::DynamoDB::Table")
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": contract.TABLE_PARTITION_KEY, "KeyType": "HASH"},
        {"AttributeName": contract.TABLE_SORT_KEY, "KeyType": "RANGE"},
    ]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": contract.TABLE_TTL_ATTRIBUTE, "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    retained = app.config.storage.retain_data
    assert table["DeletionPolicy"] == ("Retain" if retained else "Delete")
    assert retained == (env_name == "prod")


@pytest.mark.parametrize("env_name", ENVS)
def test_csp_lets_the_page_reach_only_itself_cognito_and_the_outputs_bucket(env_name: str) -> None:
    app = synth_env(env_name)
    _, policy = _one(_cartoonizer(app), "AWS::CloudFront::ResponseHeadersPolicy")
    headers = policy["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    csp = render(headers["ContentSecurityPolicy"]["ContentSecurityPolicy"], app)
    directives = {d.split(" ", 1)[0]: d.split(" ")[1:] for d in csp.split("; ")}
    storage = app.stacks.storage
    buckets = [
        "https://" + value_of(storage, storage.outputs_bucket.bucket_regional_domain_name, app),
        "https://" + value_of(storage, storage.outputs_bucket.bucket_domain_name, app),
    ]
    assert directives == {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:", *buckets],
        "media-src": ["'self'", "blob:", "data:", *buckets],
        "connect-src": ["'self'", "https://cognito-idp.${AWS::Region}.amazonaws.com", *buckets],
        "font-src": ["'self'"],
        "manifest-src": ["'self'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "object-src": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    assert headers["ContentSecurityPolicy"]["Override"] is True
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31_536_000
    assert headers["FrameOptions"]["FrameOption"] == "DENY"
    config = _distribution(_cartoonizer(app))
    policy_id = {"Ref": next(iter(resources_of_type(_cartoonizer(app).json, "AWS::CloudFront::ResponseHeadersPolicy")))}
    assert config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"] == policy_id
    assert all(b["ResponseHeadersPolicyId"] == policy_id for b in config["CacheBehaviors"])


@pytest.mark.parametrize("env_name", ENVS)
def test_users_are_invited_by_default_and_sign_in_without_a_client_secret(env_name: str) -> None:
    stack = _cartoonizer(synth_env(env_name))
    _, pool = _one(stack, "AWS::Cognito::UserPool")
    properties = pool["Properties"]
    assert properties["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert properties["AliasAttributes"] == ["email"]
    assert properties["Policies"]["PasswordPolicy"] | {"TemporaryPasswordValidityDays": 0} == {
        "MinimumLength": 12,
        "RequireLowercase": True,
        "RequireNumbers": True,
        "RequireSymbols": True,
        "RequireUppercase": True,
        "TemporaryPasswordValidityDays": 0,
    }
    assert properties["AccountRecoverySetting"] == {"RecoveryMechanisms": [{"Name": "verified_email", "Priority": 1}]}
    _, client = _one(stack, "AWS::Cognito::UserPoolClient")
    client_properties = client["Properties"]
    assert sorted(client_properties["ExplicitAuthFlows"]) == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH"]
    assert client_properties["GenerateSecret"] is False
    assert client_properties["PreventUserExistenceErrors"] == "ENABLED"


def _page_config(app: SynthesizedApp) -> dict[str, Any]:
    """config.json as the deployment writes it: the staged file with its deploy-time markers filled in."""
    stack = _cartoonizer(app)
    (deployment,) = resources_of_type(stack.json, "Custom::CDKBucketDeployment").values()
    properties = deployment["Properties"]
    outdir = Path(app.stacks.cartoonizer.node.root.outdir)
    for key, markers in zip(properties["SourceObjectKeys"], properties["SourceMarkers"], strict=True):
        path = outdir / f"asset.{key.removesuffix('.zip')}" / contract.PAGE_CONFIG_FILE
        if path.is_file() and markers:
            text = path.read_text()
            for marker, value in markers.items():
                text = text.replace(marker, render(value, app))
            return json.loads(text)  # type: ignore[no-any-return]
    raise AssertionError("no config.json among the deployment's sources")


@pytest.mark.parametrize("env_name", ENVS)
def test_page_config_names_cognito_the_client_and_the_limits(env_name: str) -> None:
    app = synth_env(env_name)
    config = app.config.cartoonizer
    (client_id,) = resources_of_type(_cartoonizer(app).json, "AWS::Cognito::UserPoolClient")
    assert _page_config(app) == {
        "api_base": "/api",
        "auth": {
            "endpoint": "https://cognito-idp.${AWS::Region}.amazonaws.com/",
            "client_id": _ref(client_id),
            "local": False,
        },
        "limits": {
            "max_image_bytes": config.image.max_bytes,
            "max_video_bytes": config.web.max_video_bytes,
            "max_generate_side": config.web.max_generate_side,
            "max_generate_steps": config.web.max_generate_steps,
            "max_generate_images": config.web.max_generate_images,
            "generate_sizes": [[512, 512], [768, 768], [512, 768], [768, 512]],
        },
        "generate_enabled": True,
        "licence": config.web.licence,
    }
    (deployment,) = resources_of_type(_cartoonizer(app).json, "Custom::CDKBucketDeployment").values()
    distribution_id, _ = _one(_cartoonizer(app), "AWS::CloudFront::Distribution")
    assert deployment["Properties"]["DistributionId"] == {"Ref": distribution_id}
    assert deployment["Properties"]["DistributionPaths"] == ["/*"]


@pytest.mark.parametrize("env_name", ENVS)
def test_outputs_bucket_lets_browsers_post_uploads_and_get_results(env_name: str) -> None:
    app = synth_env(env_name)
    (bucket,) = [
        b["Properties"]
        for k, b in resources_of_type(_storage(app).json, "AWS::S3::Bucket").items()
        if k.startswith("OutputsBucket")
    ]
    (rule,) = bucket["CorsConfiguration"]["CorsRules"]
    assert sorted(rule["AllowedMethods"]) == ["GET", "HEAD", "POST"]
    assert rule["AllowedOrigins"] == list(app.config.cartoonizer.web.cors_allowed_origins) == ["*"]
    assert rule["AllowedHeaders"] == ["*"]


@pytest.mark.parametrize("env_name", ENVS)
def test_monthly_budget_notifies_the_ops_alerts_topic(env_name: str) -> None:
    app = synth_env(env_name)
    storage = _storage(app)
    _, budget = _one(storage, "AWS::Budgets::Budget")
    properties = budget["Properties"]
    amount = app.config.storage.budget.monthly_usd
    assert amount == (100 if env_name == "prod" else 50)
    assert properties["Budget"] == {
        "BudgetLimit": {"Amount": amount, "Unit": "USD"},
        "BudgetName": f"genart-{env_name}-monthly",
        "BudgetType": "COST",
        "TimeUnit": "MONTHLY",
    }
    topic = {"Ref": next(k for k in resources_of_type(storage.json, "AWS::SNS::Topic") if k.startswith("OpsAlerts"))}
    notifications = {
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"], n["Notification"]["ThresholdType"])
        for n in properties["NotificationsWithSubscribers"]
    }
    assert notifications == {("ACTUAL", 80, "PERCENTAGE"), ("FORECASTED", 100, "PERCENTAGE")}
    for notification in properties["NotificationsWithSubscribers"]:
        assert notification["Subscribers"] == [{"Address": topic, "SubscriptionType": "SNS"}]
    # Budgets may publish to the encrypted topic, for this account's budgets only.
    source = {
        "ArnLike": {"aws:SourceArn": "arn:${AWS::Partition}:budgets::${AWS::AccountId}:*"},
        "StringEquals": {"aws:SourceAccount": "${AWS::AccountId}"},
    }
    (topic_policy,) = resources_of_type(storage.json, "AWS::SNS::TopicPolicy").values()
    (key,) = [k for i, k in resources_of_type(storage.json, "AWS::KMS::Key").items() if i.startswith("OpsAlerts")]
    for document, actions in (
        (topic_policy["Properties"]["PolicyDocument"], ["sns:Publish"]),
        (key["Properties"]["KeyPolicy"], ["kms:Decrypt", "kms:GenerateDataKey*"]),
    ):
        (statement,) = [s for s in document["Statement"] if s.get("Principal") == {"Service": "budgets.amazonaws.com"}]
        assert sorted(as_list(statement["Action"])) == actions
        conditions = {op: {k: render(v, app) for k, v in c.items()} for op, c in statement["Condition"].items()}
        assert conditions == source
    assert set(budget["DependsOn"]) >= {k for k in storage.json["Resources"] if k.startswith("OpsAlertsTopicPolicy")}


def test_switches_turn_the_studio_and_the_budget_off() -> None:
    app = _switched_off()
    storage = _storage(app)
    assert not resources_of_type(storage.json, "AWS::Budgets::Budget")
    assert "budgets.amazonaws.com" not in json.dumps(storage.json)
    (bucket,) = [b for k, b in resources_of_type(storage.json, "AWS::S3::Bucket").items() if k.startswith("OutputsB")]
    assert "CorsConfiguration" not in bucket["Properties"]
    assert "web-page/" not in json.dumps(storage.json)
    cartoonizer = _cartoonizer(app)
    types = {r["Type"] for r in cartoonizer.json["Resources"].values()}
    assert not {t for t in types if re.match(r"AWS::(CloudFront|Cognito|ApiGatewayV2|DynamoDB)::", t)}
    assert not {"StudioUrl", "UserPoolId", "ApiUrl"} & set(cartoonizer.json["Outputs"])


@pytest.mark.parametrize("env_name", ENVS)
def test_outputs_give_the_studio_url_the_pool_the_client_the_api_and_the_invite_command(env_name: str) -> None:
    app = synth_env(env_name)
    stack = _cartoonizer(app)
    outputs = stack.json["Outputs"]
    distribution_id, _ = _one(stack, "AWS::CloudFront::Distribution")
    pool_id, _ = _one(stack, "AWS::Cognito::UserPool")
    client_id, _ = _one(stack, "AWS::Cognito::UserPoolClient")
    api_id, _ = _one(stack, "AWS::ApiGatewayV2::Api")
    assert render(outputs["StudioUrl"]["Value"], app) == "https://" + _ref(distribution_id, "DomainName")
    assert outputs["UserPoolId"]["Value"] == {"Ref": pool_id}
    assert outputs["UserPoolClientId"]["Value"] == {"Ref": client_id}
    assert outputs["ApiUrl"]["Value"] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}
    assert render(outputs["InviteUserCommand"]["Value"], app) == (
        f"aws cognito-idp admin-create-user --user-pool-id {_ref(pool_id)} --username <name> "
        "--user-attributes Name=email,Value=<email> Name=email_verified,Value=true --desired-delivery-mediums EMAIL"
    )


# What the studio adds to the Cartoonizer stack; none of it is billed while nobody uses the studio (requests,
# storage and MAUs are; docs/costs.md).
IDLE_FREE_STUDIO = {
    "AWS::Cognito::UserPool",
    "AWS::Cognito::UserPoolClient",
    "AWS::DynamoDB::Table",
    "AWS::Logs::LogGroup",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
    "AWS::Lambda::Function",
    "AWS::Lambda::Permission",
    "AWS::Lambda::LayerVersion",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Authorizer",
    "AWS::S3::Bucket",
    "AWS::S3::BucketPolicy",
    "Custom::S3AutoDeleteObjects",
    "Custom::CDKBucketDeployment",
    "AWS::CloudFront::ResponseHeadersPolicy",
    "AWS::CloudFront::OriginAccessControl",
    "AWS::CloudFront::Distribution",
}


@pytest.mark.parametrize("env_name", ENVS)
def test_the_studio_costs_nothing_while_idle(env_name: str) -> None:
    stack = _cartoonizer(synth_env(env_name))
    studio = {
        r["Type"]
        for k, r in stack.json["Resources"].items()
        if k.startswith(("Studio", "CustomS3AutoDeleteObjects", "CustomCDKBucketDeployment"))
    }
    assert studio <= IDLE_FREE_STUDIO, studio - IDLE_FREE_STUDIO
    table = _one(stack, "AWS::DynamoDB::Table")[1]["Properties"]
    assert "ProvisionedThroughput" not in table
    assert "ProvisionedConcurrencyConfig" not in json.dumps(_function(stack))
    _, pool = _one(stack, "AWS::Cognito::UserPool")
    assert pool["Properties"]["UserPoolTier"] == "LITE"
    assert not resources_of_type(stack.json, "AWS::WAFv2::WebACL")
