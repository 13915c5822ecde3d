"""The bot's network: a public-subnet-only VPC (no NAT gateway), flow logs, and an egress-only security group."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.stacks.bot_log_group import retained_log_group


class BotNetwork(Construct):
    """Owns the VPC, its flow log group and the bot's security group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention_days: int,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.flow_log_group = retained_log_group(
            self, "FlowLogGroup", retention_days=log_retention_days, removal_policy=removal_policy
        )

        # Public subnets only: the bot makes outbound calls and serves nothing, and a NAT gateway would cost
        # more per month than the instance. Two AZs give the Spot Fleet twice the capacity pools.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/24"),
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=26)
            ],
            flow_logs={
                "all-traffic": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                    max_aggregation_interval=ec2.FlowLogMaxAggregationInterval.TEN_MINUTES,
                )
            },
        )

        # No inbound rules at all (access is Session Manager, which the SSM agent dials out to). Outbound is
        # HTTPS only: Discord's gateway and API, S3, Secrets Manager, CloudWatch Logs, SSM, PyPI and the AL2023
        # dnf repositories (served over HTTPS from S3). DNS, NTP and instance metadata go to link-local/VPC
        # resolver addresses that security groups do not filter.
        self.security_group = ec2.SecurityGroup(
            self,
            "BotSecurityGroup",
            vpc=self.vpc,
            description="GenArt bot: no inbound; outbound HTTPS only",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs, Discord, PyPI")
