"""CDK infrastructure for GenArt on AWS."""
