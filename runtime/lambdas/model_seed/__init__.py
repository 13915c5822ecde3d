"""Custom resource that fills an S3 prefix from a list of files (sha256-verified), or checks one holds a model."""
