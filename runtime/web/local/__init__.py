"""`make web-local`: the web studio on 127.0.0.1 (moto S3/DynamoDB, a Cognito-like sign-in stub, tiny models)."""
