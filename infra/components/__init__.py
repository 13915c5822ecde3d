"""Reusable constructs every system composes: endpoint, topics, image publishing; small typed props, grant_* methods."""
