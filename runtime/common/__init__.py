"""Code every runtime shares: the JSON log format, the error vocabulary, micro-batching knobs, env settings."""
