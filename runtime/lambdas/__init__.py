"""AWS Lambda functions of the app, one folder (and one CDK code asset) per function."""
