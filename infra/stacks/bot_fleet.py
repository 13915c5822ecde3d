"""Spot capacity for the bot: an EC2 Spot Fleet request (default) or an Auto Scaling group with mixed instances."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

# Auto Scaling groups have no "diversified" strategy (Spot Fleet only); BotConfig rejects that combination.
ASG_SPOT_ALLOCATION = {
    "priceCapacityOptimized": autoscaling.SpotAllocationStrategy.PRICE_CAPACITY_OPTIMIZED,
    "capacityOptimized": autoscaling.SpotAllocationStrategy.CAPACITY_OPTIMIZED,
    "lowestPrice": autoscaling.SpotAllocationStrategy.LOWEST_PRICE,
}
# Seconds an instance keeps running after its rebalance replacement launched (Spot Fleet's minimum is 120);
# the minimum keeps the window in which two bots answer the same prefix command short.
REBALANCE_TERMINATION_DELAY_S = 120


class BotSpotFleet(Construct):
    """Owns a "maintain" Spot Fleet request over every instance type x public subnet, and its fleet role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        launch_template: ec2.LaunchTemplate,
        subnets: Sequence[ec2.ISubnet],
        instance_types: Sequence[str],
        target_capacity: int,
        allocation_strategy: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.fleet_role = iam.Role(
            self,
            "FleetRole",
            assumed_by=iam.ServicePrincipal("spotfleet.amazonaws.com"),
            description="Lets EC2 Spot Fleet launch, tag and terminate the GenArt bot instances",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEC2SpotFleetTaggingRole")
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.fleet_role,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM4",
                    reason="AmazonEC2SpotFleetTaggingRole is the service role AWS documents for Spot Fleet "
                    "(RunInstances, CreateTags, TerminateInstances, PassRole to EC2 only); AWS keeps it in step "
                    "with the service's needs.",
                    applies_to=[
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEC2SpotFleetTaggingRole"
                    ],
                )
            ],
        )

        overrides = [
            ec2.CfnSpotFleet.LaunchTemplateOverridesProperty(instance_type=itype, subnet_id=subnet.subnet_id)
            for subnet in subnets
            for itype in instance_types
        ]
        self.fleet = ec2.CfnSpotFleet(
            self,
            "Fleet",
            spot_fleet_request_config_data=ec2.CfnSpotFleet.SpotFleetRequestConfigDataProperty(
                iam_fleet_role=self.fleet_role.role_arn,
                type="maintain",
                target_capacity=target_capacity,
                allocation_strategy=allocation_strategy,
                instance_interruption_behavior="terminate",
                replace_unhealthy_instances=True,
                # On a rebalance recommendation the fleet starts a replacement first and terminates the old
                # instance TerminationDelay seconds later; the old bot keeps serving until then (it only logs the
                # recommendation) and exits 0 on the SIGTERM, so the hand-over gap or overlap stays short.
                spot_maintenance_strategies=ec2.CfnSpotFleet.SpotMaintenanceStrategiesProperty(
                    capacity_rebalance=ec2.CfnSpotFleet.SpotCapacityRebalanceProperty(
                        replacement_strategy="launch-before-terminate",
                        termination_delay=REBALANCE_TERMINATION_DELAY_S,
                    )
                ),
                launch_template_configs=[
                    ec2.CfnSpotFleet.LaunchTemplateConfigProperty(
                        launch_template_specification=ec2.CfnSpotFleet.FleetLaunchTemplateSpecificationProperty(
                            launch_template_id=launch_template.launch_template_id,
                            version=launch_template.latest_version_number,
                        ),
                        overrides=overrides,
                    )
                ],
            ),
        )


class BotAutoScalingGroup(Construct):
    """Owns an all-Spot Auto Scaling group (on-demand base 0) with the same instance types and capacity rebalance."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        launch_template: ec2.LaunchTemplate,
        vpc: ec2.IVpc,
        instance_types: Sequence[str],
        target_capacity: int,
        allocation_strategy: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.group = autoscaling.AutoScalingGroup(
            self,
            "Group",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            min_capacity=target_capacity,
            max_capacity=target_capacity,
            capacity_rebalance=True,
            mixed_instances_policy=autoscaling.MixedInstancesPolicy(
                launch_template=launch_template,
                launch_template_overrides=[
                    autoscaling.LaunchTemplateOverrides(instance_type=ec2.InstanceType(itype))
                    for itype in instance_types
                ],
                instances_distribution=autoscaling.InstancesDistribution(
                    on_demand_base_capacity=0,
                    on_demand_percentage_above_base_capacity=0,
                    spot_allocation_strategy=ASG_SPOT_ALLOCATION[allocation_strategy],
                ),
            ),
            # A new launch template version (code or AMI change) replaces the instance; one bot at a time.
            update_policy=autoscaling.UpdatePolicy.rolling_update(max_batch_size=1, min_instances_in_service=0),
        )
        NagSuppressions.add_resource_suppressions(
            self.group,
            [
                NagPackSuppression(
                    id="AwsSolutions-AS3",
                    reason="A single self-healing Spot bot: replacements are routine and visible in the bot's "
                    "log group; scaling notifications would only add an SNS topic nobody reads.",
                ),
                NagPackSuppression(
                    id="CdkNagValidationFailure",
                    reason="EC26 cannot read a launch template through a MixedInstancesPolicy; the template's "
                    "only volume is an encrypted gp3 root volume (asserted in tests/infra/test_bot_stack.py).",
                    applies_to=["AwsSolutions-EC26"],
                ),
            ],
        )
