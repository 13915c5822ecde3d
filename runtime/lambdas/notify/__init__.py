"""Pipeline success notification: publishes a run's S3 locations and a presigned sample-grid link to SNS."""
