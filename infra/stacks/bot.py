"""Bot stack: the always-on Discord bot on one Spot instance in a NAT-free VPC, with its role and log group."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Aws, CfnOutput, Fn, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from infra.components.ops_alerts import OpsAlertsTopic
from infra.config import BotConfig
from infra.stacks.bot_fleet import BotAutoScalingGroup, BotSpotFleet
from infra.stacks.bot_heartbeat import BotHeartbeat
from infra.stacks.bot_log_group import retained_log_group
from infra.stacks.bot_network import BotNetwork
from infra.stacks.bot_user_data import bot_user_data
from runtime.bot import contract as bot_contract

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_VOLUME_GIB = 8
_CPU_TYPES = {"arm64": ec2.AmazonLinuxCpuType.ARM_64, "x86_64": ec2.AmazonLinuxCpuType.X86_64}


def model_list_prefix(model_key: str) -> str:
    """Return the s3:prefix pattern the bot may list: the model's folder (`stylegan/*`), or the key itself."""
    folder, slash, _ = model_key.rpartition("/")
    return f"{folder}/*" if slash else model_key


class BotStack(Stack):
    """Owns the bot's VPC, launch template, Spot capacity, instance role and log group; reads Storage's objects."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: BotConfig,
        models_bucket: s3.IBucket,
        bot_token_secret: secretsmanager.ISecret,
        ops_alerts: OpsAlertsTopic,
        env_name: str,
        retain_logs: bool,
        **kwargs: object,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        log_removal = RemovalPolicy.RETAIN if retain_logs else RemovalPolicy.DESTROY

        self.log_group = retained_log_group(
            self, "BotLogGroup", retention_days=config.log_retention_days, removal_policy=log_removal
        )
        self.network = BotNetwork(
            self, "Network", log_retention_days=config.log_retention_days, removal_policy=log_removal
        )
        self.code = s3_assets.Asset(
            self,
            "BotCode",
            path=str(REPO_ROOT / bot_contract.CODE_ASSET_DIR),
            exclude=list(bot_contract.CODE_ASSET_EXCLUDE),
        )

        self.instance_role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="GenArt bot instance: its code object, the ONNX model object (and listing its folder), "
            "the token secret, its logs",
        )
        self._grant_instance_permissions(config=config, models_bucket=models_bucket, secret=bot_token_secret)

        # Names and ARNs only; the bot reads the token value from Secrets Manager at start.
        environment = {
            bot_contract.ENV_TOKEN_SECRET_ARN: bot_token_secret.secret_arn,
            bot_contract.ENV_MODELS_BUCKET: models_bucket.bucket_name,
            bot_contract.ENV_MODEL_KEY: config.model_key,
            "AWS_REGION": Aws.REGION,
            bot_contract.ENV_MODEL_CACHE: bot_contract.MODEL_CACHE_PATH,
            bot_contract.ENV_MODEL_POLL_S: str(config.model_poll_s),
            bot_contract.ENV_LOG_LEVEL: "INFO",
        }
        if config.operator_ids:
            environment[bot_contract.ENV_OPERATOR_IDS] = ",".join(config.operator_ids)
        user_data = bot_user_data(
            code_bucket_name=self.code.s3_bucket_name,
            code_object_key=self.code.s3_object_key,
            log_group_name=self.log_group.log_group_name,
            region=Aws.REGION,
            environment=environment,
        )
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            # An SSM-parameter-typed CloudFormation parameter: the newest AL2023 AMI is resolved at deploy time.
            machine_image=ec2.MachineImage.latest_amazon_linux2023(
                kernel=ec2.AmazonLinux2023Kernel.DEFAULT, cpu_type=_CPU_TYPES[config.architecture]
            ),
            role=self.instance_role,
            security_group=self.network.security_group,
            user_data=user_data,
            http_endpoint=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            # The bot runs on the host, not in a container, so one hop is enough.
            http_put_response_hop_limit=1,
            # The bootstrap shuts a broken instance down; for Spot capacity that must mean "replace me".
            instance_initiated_shutdown_behavior=ec2.InstanceInitiatedShutdownBehavior.TERMINATE,
            instance_metadata_tags=False,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        ROOT_VOLUME_GIB,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )
            ],
        )

        if config.fleet == "asg":
            self.auto_scaling_group: BotAutoScalingGroup | None = BotAutoScalingGroup(
                self,
                "Capacity",
                launch_template=self.launch_template,
                vpc=self.network.vpc,
                instance_types=config.instance_types,
                target_capacity=config.target_capacity,
                allocation_strategy=config.allocation_strategy,
            )
            self.spot_fleet: BotSpotFleet | None = None
            CfnOutput(
                self,
                "AutoScalingGroupName",
                value=self.auto_scaling_group.group.auto_scaling_group_name,
                description="Auto Scaling group running the bot",
            )
        else:
            self.spot_fleet = BotSpotFleet(
                self,
                "Capacity",
                launch_template=self.launch_template,
                subnets=self.network.vpc.public_subnets,
                instance_types=config.instance_types,
                target_capacity=config.target_capacity,
                allocation_strategy=config.allocation_strategy,
            )
            self.auto_scaling_group = None
            CfnOutput(
                self,
                "SpotFleetRequestId",
                value=self.spot_fleet.fleet.ref,
                description="Spot Fleet request running the bot",
            )
        # A bot that is meant to run and stays silent (failed boot, crash loop, placeholder token) says so.
        self.heartbeat: BotHeartbeat | None = None
        if config.target_capacity > 0:
            self.heartbeat = BotHeartbeat(
                self,
                "Heartbeat",
                log_group=self.log_group,
                namespace=f"GenArt/{env_name}",
                action=ops_alerts.alarm_action(),
            )
        CfnOutput(self, "LogGroupName", value=self.log_group.log_group_name, description="Bot logs (JSON lines)")
        CfnOutput(self, "InstanceRoleArn", value=self.instance_role.role_arn, description="Bot instance role")

    @property
    def availability_zones(self) -> list[str]:
        """Two AZs chosen by CloudFormation at deploy time, so an account/region-pinned env needs no AZ lookup."""
        return [Fn.select(0, Fn.get_azs()), Fn.select(1, Fn.get_azs())]

    def _grant_instance_permissions(
        self, *, config: BotConfig, models_bucket: s3.IBucket, secret: secretsmanager.ISecret
    ) -> None:
        role = self.instance_role
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadBotCodeAndModel",
                actions=["s3:GetObject"],
                resources=[
                    self.code.bucket.arn_for_objects(self.code.s3_object_key),
                    models_bucket.arn_for_objects(config.model_key),
                ],
            )
        )
        # Without s3:ListBucket, S3 answers 403 for a missing key: the bot could not tell "not published yet" from
        # a permission problem. Listing is limited to the model's folder (names only; reading stays one object).
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListModelPrefix",
                actions=["s3:ListBucket"],
                resources=[models_bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [model_list_prefix(config.model_key)]}},
            )
        )
        secret.grant_read(role)
        self.log_group.grant_write(role)

        # Session Manager and Run Command without AmazonSSMManagedInstanceCore (which also grants Parameter
        # Store reads, inventory and patching the bot does not use).
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SsmRegisterInstance",
                actions=["ssm:UpdateInstanceInformation"],
                resources=[self.format_arn(service="ec2", resource="instance", resource_name="*")],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="SsmSessionAndRunCommandChannels",
                actions=[
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                    "ec2messages:AcknowledgeMessage",
                    "ec2messages:DeleteMessage",
                    "ec2messages:FailMessage",
                    "ec2messages:GetEndpoint",
                    "ec2messages:GetMessages",
                    "ec2messages:SendReply",
                ],
                resources=["*"],
            )
        )
        NagSuppressions.add_resource_suppressions(
            role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="ssmmessages:* and ec2messages:* actions support no resource ARNs; "
                    "ssm:UpdateInstanceInformation is scoped to instances of this account and region because the "
                    "instance id is only known at launch. S3, Secrets Manager and Logs statements name exact ARNs.",
                    applies_to=[
                        "Resource::*",
                        # Literal partition/region/account when the env pins them, pseudo-parameters otherwise.
                        RegexAppliesTo(
                            regex=r"/^Resource::arn:(<AWS::Partition>|[a-z-]+):ec2:(<AWS::Region>|[a-z0-9-]+):"
                            r"(<AWS::AccountId>|\d{12}):instance\/\*$/"
                        ),
                    ],
                )
            ],
            apply_to_children=True,
        )
