"""The web studio's HTTP API: one Lambda (stdlib + boto3 only) behind API Gateway's JWT authorizer."""
