"""The web studio's sign-in: a Cognito user pool (operators invite users) and the page's app client."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

# The page keeps tokens in memory and renews them with the refresh token, so sessions outlast the one-hour tokens.
TOKEN_VALIDITY = Duration.hours(1)
REFRESH_TOKEN_VALIDITY = Duration.days(30)
PASSWORD_MIN_LENGTH = 12


class WebAuth(Construct):
    """Owns the user pool (sign-in by username or email, strong passwords, recovery by email) and the app client."""

    def __init__(
        self, scope: Construct, construct_id: str, *, self_sign_up: bool, pool_name: str, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            user_pool_name=pool_name,
            self_sign_up_enabled=self_sign_up,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            password_policy=cognito.PasswordPolicy(
                min_length=PASSWORD_MIN_LENGTH,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(7),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            # Lite: the cheapest plan (no charge below 10,000 monthly active users); the login form needs nothing more.
            feature_plan=cognito.FeaturePlan.LITE,
            user_invitation=cognito.UserInvitationConfig(
                email_subject="Your GenArt studio account",
                email_body="Sign in to the GenArt studio as {username} with the temporary password {####}; "
                "you will choose your own password at the first sign-in.",
            ),
            deletion_protection=removal_policy == RemovalPolicy.RETAIN,
            removal_policy=removal_policy,
        )
        self.client = self.user_pool.add_client(
            "Page",
            # The page calls Cognito's InitiateAuth directly (no hosted UI, no SDK): a public client without a secret.
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_password=True),
            prevent_user_existence_errors=True,
            id_token_validity=TOKEN_VALIDITY,
            access_token_validity=TOKEN_VALIDITY,
            refresh_token_validity=REFRESH_TOKEN_VALIDITY,
            enable_token_revocation=True,
            disable_o_auth=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.user_pool,
            [
                NagPackSuppression(
                    id="AwsSolutions-COG2",
                    reason="MFA is not required: the studio's login form handles only the new-password challenge, "
                    "and what a signed-in user can spend is bounded by per-user rate limits, endpoint max instances "
                    "and the budget alarm. Operators can require MFA per user later without a stack change.",
                ),
                *(
                    NagPackSuppression(
                        id=rule,
                        reason="Threat protection (advanced security) needs the Plus feature plan, billed per monthly "
                        "active user from the first one; the Lite plan keeps an idle studio free. Self sign-up is off "
                        "by default, so every user is invited by an operator.",
                    )
                    for rule in ("AwsSolutions-COG3", "AwsSolutions-COG8")
                ),
            ],
        )

    @property
    def issuer(self) -> str:
        """The `iss` claim of the pool's tokens, which the JWT authorizer must match exactly (with the scheme)."""
        # Built like CDK's HttpUserPoolAuthorizer does; the pool's ProviderName attribute has no https:// prefix.
        return f"https://cognito-idp.{Stack.of(self).region}.amazonaws.com/{self.user_pool.user_pool_id}"
