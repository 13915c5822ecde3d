"""Deploy-time model files: ModelSeed fills an S3 prefix from a file list; ModelPrefixCheck fails a deploy without one.

Both are CloudFormation custom resources (CDK Provider framework) backed by runtime/lambdas/model_seed. Resources
that need the files pass as `dependents` (or `add_dependent`) and are created only once the seed or the check
succeeded. Deleting either resource never deletes objects: seeded files are data and stay in the bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct, IConstruct

from runtime.lambdas.model_seed import contract
from runtime.lambdas.model_seed.contract import SeedFile

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the seed role may do to each listed object (and nothing else in the bucket).
SEED_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:GetObjectTagging",
    "s3:PutObjectTagging",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    "s3:DeleteObject",
)


def _code() -> lambda_.Code:
    return lambda_.Code.from_asset(str(REPO_ROOT / contract.CODE_ASSET_DIR), exclude=list(contract.CODE_ASSET_EXCLUDE))


def _function(
    scope: Construct,
    construct_id: str,
    *,
    handler: str,
    role: iam.IRole,
    log_group: logs.ILogGroup,
    timeout: Duration,
    description: str,
    memory_size: int = 256,
    environment: dict[str, str] | None = None,
) -> lambda_.Function:
    function = lambda_.Function(
        scope,
        construct_id,
        description=description,
        runtime=lambda_.Runtime.PYTHON_3_11,
        architecture=lambda_.Architecture.ARM_64,
        handler=handler,
        code=_code(),
        role=role,
        log_group=log_group,
        timeout=timeout,
        memory_size=memory_size,
        environment=environment or {},
    )
    NagSuppressions.add_resource_suppressions(
        function,
        [
            NagPackSuppression(
                id="AwsSolutions-L1",
                reason="Pinned to Python 3.11, the interpreter the handler's tests and CI run on; a newer runtime "
                "is adopted with a test run, not by drift.",
            )
        ],
    )
    return function


def _suppress_provider_findings(provider: cr.Provider, *, asynchronous: bool) -> None:
    """The Provider framework's own functions, roles and (async) waiter state machine are CDK's, not ours."""
    findings = [
        NagPackSuppression(
            id="AwsSolutions-IAM4",
            reason="CDK's Provider framework functions use AWSLambdaBasicExecutionRole for their own logs.",
            applies_to=["Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"],
        ),
        NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="CDK's Provider framework invokes only this construct's functions (and their versions, the "
            "':*' suffix) and, when asynchronous, starts only its own waiter state machine.",
            applies_to=[RegexAppliesTo(regex="/^Resource::<.*Arn>:\\*$/")],
        ),
        NagPackSuppression(
            id="AwsSolutions-L1",
            reason="The Provider framework's Node.js runtime is chosen by the pinned aws-cdk-lib release.",
        ),
    ]
    if asynchronous:
        findings += [
            NagPackSuppression(
                id="AwsSolutions-SF2",
                reason="The Provider framework's waiter only retries is_complete; X-Ray would trace nothing useful.",
            ),
            NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="The waiter state machine logs to this construct's log group; the CloudWatch Logs delivery "
                "actions Step Functions needs for that (logs:CreateLogDelivery, ...) take no resource ARN.",
                applies_to=["Resource::*"],
            ),
        ]
    NagSuppressions.add_resource_suppressions(provider, findings, apply_to_children=True)


class ModelSeed(Construct):
    """Copies `files` into bucket/prefix before `dependents` are created (see runtime/lambdas/model_seed/seeder.py).

    Files are copied in the order given; `marker` (a key of one of them, copied last by convention) marks a
    complete folder: when it exists and the seeder did not write it, the prefix belongs to someone else and is
    left alone. The function's role may touch only the listed objects (read, write, tag, multipart, delete of
    an object it wrote that failed verification); listing is limited to those keys plus the bucket's unfinished
    uploads. Deleting the resource keeps every object.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        prefix: str,
        files: Sequence[SeedFile],
        marker: str | None = None,
        dependents: Sequence[IConstruct] = (),
        description: str,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = bucket
        self.prefix = contract.check_prefix(prefix)
        self.files = contract.check_files(tuple(files), marker)
        self.marker = marker
        keys = [self.prefix + f.key for f in self.files]

        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SeedObjects",
                actions=list(SEED_OBJECT_ACTIONS),
                resources=[bucket.arn_for_objects(k) for k in keys],
            )
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FindSeedObjects",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringEquals": {"s3:prefix": keys}},
            )
        )
        # Unfinished uploads are listed per bucket (S3 has no object-level form of this action); the role can act
        # only on uploads of the keys above.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FindUnfinishedUploads", actions=["s3:ListBucketMultipartUploads"], resources=[bucket.bucket_arn]
            )
        )
        if bucket.encryption_key is not None:
            bucket.encryption_key.grant_encrypt_decrypt(self.role)
        self.log_group.grant_write(self.role)

        self.on_event_function = _function(
            self,
            "OnEvent",
            handler=contract.HANDLER_ON_EVENT,
            role=self.role,
            log_group=self.log_group,
            timeout=Duration.seconds(30),
            description=f"{description}: validates the file list",
        )
        self.is_complete_function = _function(
            self,
            "IsComplete",
            handler=contract.HANDLER_IS_COMPLETE,
            role=self.role,
            log_group=self.log_group,
            timeout=Duration.seconds(contract.FUNCTION_TIMEOUT_S),
            memory_size=contract.FUNCTION_MEMORY_MB,
            description=f"{description}: copies and verifies files until its time is up",
            environment={
                contract.ENV_PART_SIZE: str(contract.DEFAULT_PART_SIZE),
                contract.ENV_READ_TIMEOUT: str(contract.DEFAULT_READ_TIMEOUT_S),
                contract.ENV_ATTEMPTS: str(contract.DEFAULT_ATTEMPTS),
            },
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.on_event_function,
            is_complete_handler=self.is_complete_function,
            query_interval=Duration.seconds(contract.QUERY_INTERVAL_S),
            total_timeout=Duration.seconds(contract.TOTAL_TIMEOUT_S),
            log_group=self.log_group,
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        _suppress_provider_findings(self.provider, asynchronous=True)
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.provider.service_token,
            resource_type=contract.SEED_RESOURCE_TYPE,
            service_timeout=Duration.seconds(contract.TOTAL_TIMEOUT_S),
            properties={
                contract.PROP_BUCKET: bucket.bucket_name,
                contract.PROP_PREFIX: self.prefix,
                contract.PROP_FILES: [f.to_property() for f in self.files],
                **({contract.PROP_MARKER: marker} if marker is not None else {}),
            },
        )
        for dependent in dependents:
            self.add_dependent(dependent)

    def add_dependent(self, construct: IConstruct) -> None:
        """Create `construct` (and everything in it) only after the files are in place and verified."""
        construct.node.add_dependency(self.resource)


class ModelPrefixCheck(Construct):
    """Fails the deploy within seconds, saying `how_to_fix`, unless every `required` key exists under the prefix.

    For accounts that cannot download a model at deploy time: `dependents` (the resources that would load the
    files) are created only once the check passes. Its role may only list those exact keys.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        prefix: str,
        required: Sequence[str],
        how_to_fix: str,
        dependents: Sequence[IConstruct] = (),
        description: str,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        self.prefix = contract.check_prefix(prefix)
        if not required:
            raise contract.ManifestError("required: name at least one key")
        self.required = tuple(contract.check_key(key, "required") for key in required)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY)
        self.role = iam.Role(
            self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"), description=description
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="FindRequiredObjects",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringEquals": {"s3:prefix": [self.prefix + key for key in self.required]}},
            )
        )
        self.log_group.grant_write(self.role)
        self.function = _function(
            self,
            "Check",
            handler=contract.HANDLER_CHECK,
            role=self.role,
            log_group=self.log_group,
            timeout=Duration.seconds(30),
            description=f"{description}: fails the deploy until the prefix holds what is required",
        )
        self.provider = cr.Provider(self, "Provider", on_event_handler=self.function, log_group=self.log_group)
        _suppress_provider_findings(self.provider, asynchronous=False)
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.provider.service_token,
            resource_type=contract.CHECK_RESOURCE_TYPE,
            properties={
                contract.PROP_BUCKET: bucket.bucket_name,
                contract.PROP_PREFIX: self.prefix,
                contract.PROP_REQUIRED: list(self.required),
                contract.PROP_HOW_TO_FIX: how_to_fix,
            },
        )
        for dependent in dependents:
            self.add_dependent(dependent)

    def add_dependent(self, construct: IConstruct) -> None:
        """Create `construct` only after the check passed."""
        construct.node.add_dependency(self.resource)
