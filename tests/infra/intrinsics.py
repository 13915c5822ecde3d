"""Renders CloudFormation values to comparable strings, so tests can assert exact ARNs, names and user data.

A reference renders as ``${LogicalId}`` / ``${LogicalId.Attribute}`` (pseudo parameters as ``${AWS::Region}``, the
same spelling Fn::Sub uses), and a reference to another stack of the app as ``${Stack/LogicalId...}``, resolved
through the producing stack's output or export. So a test can say "exactly the models bucket's ARN + /stylegan/*"
whether CDK wires the reference through Fn::GetStackOutput or Fn::ImportValue.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Stack

from tests.infra.synth import SynthesizedApp


def render(value: Any, app: SynthesizedApp, *, _prefix: str = "") -> str:
    """One CloudFormation string value (literal or intrinsic) as a string with ${...} placeholders."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if not (isinstance(value, dict) and len(value) == 1):
        raise ValueError(f"not a CloudFormation string value: {value!r}")
    ((function, argument),) = value.items()
    if function == "Ref":
        return "${" + (argument if argument.startswith("AWS::") else _prefix + argument) + "}"
    if function == "Fn::GetAtt":
        return "${" + _prefix + ".".join(argument) + "}"
    if function == "Fn::Join":
        separator, parts = argument
        return str(separator).join(render(part, app, _prefix=_prefix) for part in parts)
    if function == "Fn::Sub" and isinstance(argument, str) and "${AWS::" in argument:
        return argument
    if function == "Fn::GetStackOutput":
        producer = argument["StackName"]
        output = app.by_name[producer].json["Outputs"][argument["OutputName"]]
        return render(output["Value"], app, _prefix=f"{producer}/")
    if function == "Fn::ImportValue":
        for name, stack in app.by_name.items():
            for output in stack.json.get("Outputs", {}).values():
                if output.get("Export", {}).get("Name") == argument:
                    return render(output["Value"], app, _prefix=f"{name}/")
    raise ValueError(f"cannot render {value!r}")


def render_all(value: Any, app: SynthesizedApp) -> list[str]:
    """A CloudFormation value that may be one string or a list of them, rendered and sorted."""
    return sorted(render(v, app) for v in (value if isinstance(value, list) else [value]))


def value_of(stack: Stack, token: str, app: SynthesizedApp, *, consumer: Stack | None = None) -> str:
    """How a token of `stack` (say, Storage's models bucket ARN) renders when another stack of the app uses it."""
    prefix = "" if consumer is stack else f"{stack.stack_name}/"
    return render(stack.resolve(token), app, _prefix=prefix)


def as_list(value: Any) -> list[Any]:
    """An IAM Action/Resource field as a list."""
    return value if isinstance(value, list) else [value]


def canonical_statements(statements: list[dict[str, Any]], app: SynthesizedApp) -> list[dict[str, Any]]:
    """IAM statements with Action and Resource as sorted lists of rendered strings, ordered by their JSON form."""
    canonical = []
    for statement in statements:
        item = {key: statement[key] for key in statement if key not in ("Action", "Resource", "Sid")}
        item["Action"] = sorted(as_list(statement["Action"]))
        item["Resource"] = render_all(statement["Resource"], app)
        canonical.append(item)
    return sorted(canonical, key=lambda s: json.dumps(s, sort_keys=True))
