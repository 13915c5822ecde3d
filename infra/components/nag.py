"""cdk-nag helpers shared by the stacks: applies_to patterns that keep each suppression to named wildcards."""

from __future__ import annotations

import re

from cdk_nag import RegexAppliesTo


def wildcard_objects(key_pattern: str) -> RegexAppliesTo:
    """applies_to for the object ARN `<bucket ARN>/<key_pattern>`, whose * wildcards the suppression allows."""
    escaped = re.escape(key_pattern).replace("/", "\\/")
    return RegexAppliesTo(regex=f"/^Resource::.*\\/{escaped}$/")
