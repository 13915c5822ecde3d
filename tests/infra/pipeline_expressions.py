"""Evaluate a rendered SageMaker Pipelines definition the way the service does, for one imagined execution.

Resolves parameter, execution-variable, step-property, Std:Join and Std:JsonGet expressions to concrete values, and
evaluates ConditionStep conditions; the tests then check the result against botocore's request shapes, the notify
function and the runtime's quality gate.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.session import get_session
from botocore.validate import validate_parameters

_STEP_PROPERTY = re.compile(r"Steps\.(?P<step>[A-Za-z0-9]+)\.(?P<path>.+)")
_OUTPUT = re.compile(r"ProcessingOutputConfig\.Outputs\['(?P<name>[^']+)'\]\.S3Output\.S3Uri")
_LAMBDA_OUTPUT = re.compile(r"OutputParameters\['(?P<name>[^']+)'\]")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "GreaterThan": operator.gt,
    "GreaterThanOrEqualTo": operator.ge,
    "LessThan": operator.lt,
    "LessThanOrEqualTo": operator.le,
}
# SageMaker names each job of an execution itself; CreateProcessingJob/CreateTrainingJob require a name.
JOB_NAME_FIELDS = {"Processing": "ProcessingJobName", "Training": "TrainingJobName"}
REQUEST_SHAPES = {"Processing": "CreateProcessingJob", "Training": "CreateTrainingJob"}


def all_steps(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every step by name, including those inside ConditionStep branches."""
    found: dict[str, dict[str, Any]] = {}

    def visit(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            found[step["Name"]] = step
            if step["Type"] == "Condition":
                visit(step["Arguments"].get("IfSteps", []))
                visit(step["Arguments"].get("ElseSteps", []))

    visit(list(definition["Steps"]))
    return found


@dataclass
class Execution:
    """One imagined execution: parameter values (defaults unless overridden), ids, and what the steps produced."""

    definition: Mapping[str, Any]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    execution_id: str = "exec0001"
    execution_arn: str = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/p/execution/exec0001"
    property_files: dict[str, dict[str, Any]] = field(default_factory=dict)
    lambda_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def parameter(self, name: str) -> Any:
        if name in self.overrides:
            return self.overrides[name]
        (default,) = [p["DefaultValue"] for p in self.definition["Parameters"] if p["Name"] == name]
        return default

    def resolve(self, node: Any) -> Any:
        """The concrete value of a definition fragment."""
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Get"}:
            return self._get(node["Get"])
        if set(node) == {"Std:Join"}:
            join = node["Std:Join"]
            return str(join["On"]).join(str(self.resolve(value)) for value in join["Values"])
        if set(node) == {"Std:JsonGet"}:
            ref = node["Std:JsonGet"]["PropertyFile"]["Get"]
            matched = re.fullmatch(r"Steps\.(?P<step>[A-Za-z0-9]+)\.PropertyFiles\.(?P<name>\w+)", ref)
            assert matched, ref
            return self.property_files[f"{matched['step']}.{matched['name']}"][node["Std:JsonGet"]["Path"]]
        return {key: self.resolve(value) for key, value in node.items()}

    def _get(self, path: str) -> Any:
        if path.startswith("Parameters."):
            return self.parameter(path.removeprefix("Parameters."))
        if path == "Execution.PipelineExecutionId":
            return self.execution_id
        if path == "Execution.PipelineExecutionArn":
            return self.execution_arn
        matched = _STEP_PROPERTY.fullmatch(path)
        assert matched, f"unsupported expression {path}"
        step = all_steps(self.definition)[matched["step"]]
        prop = matched["path"]
        if output := _OUTPUT.fullmatch(prop):
            (found,) = [
                o for o in step["Arguments"]["ProcessingOutputConfig"]["Outputs"] if o["OutputName"] == output["name"]
            ]
            return self.resolve(found["S3Output"]["S3Uri"])
        if prop == "ModelArtifacts.S3ModelArtifacts":
            output_path = self.resolve(step["Arguments"]["OutputDataConfig"]["S3OutputPath"])
            return f"{output_path}/pipelines-{self.execution_id}-{step['Name'].lower()}/output/model.tar.gz"
        if lambda_output := _LAMBDA_OUTPUT.fullmatch(prop):
            return self.lambda_outputs[step["Name"]][lambda_output["name"]]
        raise AssertionError(f"unsupported step property {path}")

    def condition(self, condition: Mapping[str, Any]) -> bool:
        """Evaluate one ConditionStep condition."""
        kind = condition["Type"]
        if kind == "Or":
            return any(self.condition(c) for c in condition["Conditions"])
        if kind == "Not":
            return not self.condition(condition["Expression"])
        if kind == "In":
            return self.resolve(condition["QueryValue"]) in self.resolve(condition["Values"])
        left, right = self.resolve(condition["LeftValue"]), self.resolve(condition["RightValue"])
        return _COMPARE[kind](left, right)

    def branch(self, step_name: str) -> list[str]:
        """Names of the steps a ConditionStep runs: IfSteps when every condition holds, else ElseSteps."""
        arguments = all_steps(self.definition)[step_name]["Arguments"]
        taken = "IfSteps" if all(self.condition(c) for c in arguments["Conditions"]) else "ElseSteps"
        return [step["Name"] for step in arguments.get(taken, [])]

    def job_request(self, step_name: str) -> dict[str, Any]:
        """The Create*Job request SageMaker would send for a job step (with the job name it adds)."""
        step = all_steps(self.definition)[step_name]
        request = self.resolve(step["Arguments"])
        request[JOB_NAME_FIELDS[step["Type"]]] = f"pipelines-{self.execution_id}-{step_name.lower()}"[:63]
        return dict(request)


def validate_job_request(kind: str, request: Mapping[str, Any]) -> None:
    """Raise botocore's ParamValidationError when the request does not fit the SageMaker API's input shape."""
    model = get_session().get_service_model("sagemaker").operation_model(REQUEST_SHAPES[kind])
    validate_parameters(dict(request), model.input_shape)
