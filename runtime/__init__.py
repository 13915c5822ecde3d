"""Runtime code for the GenArt on AWS systems (bot, endpoint, pipeline, lambdas)."""
