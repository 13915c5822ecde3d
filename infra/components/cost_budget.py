"""A monthly AWS Budgets cost budget whose notifications go to the ops-alerts topic."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_budgets as budgets
from constructs import Construct

from infra.components.ops_alerts import OpsAlertsTopic


@dataclass(frozen=True)
class BudgetThreshold:
    """Notify when ACTUAL or FORECASTED cost passes percent of the budget."""

    kind: str
    percent: int


# Actual spend at 80% is a warning with time left; a forecast above 100% is the early sign of a runaway month.
THRESHOLDS = (BudgetThreshold("ACTUAL", 80), BudgetThreshold("FORECASTED", 100))


class CostBudget(Construct):
    """Owns the budget; admits AWS Budgets to the (KMS-encrypted) ops-alerts topic, from this account only."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        budget_name: str,
        monthly_usd: int,
        alerts: OpsAlertsTopic,
        environment_tag: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        alerts.encrypted.grant_service_publish(
            service="budgets.amazonaws.com",
            source_arn_pattern=f"arn:{Aws.PARTITION}:budgets::{Aws.ACCOUNT_ID}:*",
            sid="Budgets",
        )
        filters = {"TagKeyValue": [f"user:environment${environment_tag}"]} if environment_tag is not None else None
        self.budget = budgets.CfnBudget(
            self,
            "Budget",
            budget=budgets.CfnBudget.BudgetDataProperty(
                budget_name=budget_name,
                budget_type="COST",
                time_unit="MONTHLY",
                budget_limit=budgets.CfnBudget.SpendProperty(amount=monthly_usd, unit="USD"),
                cost_filters=filters,
            ),
            notifications_with_subscribers=[
                budgets.CfnBudget.NotificationWithSubscribersProperty(
                    notification=budgets.CfnBudget.NotificationProperty(
                        notification_type=threshold.kind,
                        comparison_operator="GREATER_THAN",
                        threshold=threshold.percent,
                        threshold_type="PERCENTAGE",
                    ),
                    subscribers=[
                        budgets.CfnBudget.SubscriberProperty(subscription_type="SNS", address=alerts.topic_arn)
                    ],
                )
                for threshold in THRESHOLDS
            ],
        )
        # Budgets checks that it may publish when the budget is created.
        self.budget.node.add_dependency(alerts)
