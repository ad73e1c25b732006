"""A small evaluator for the CloudFormation the ECS template uses, so tests can see the task's
environment, its secrets and its IAM policy as a stack with given parameters would create them.

Covers Ref (parameters, pseudo parameters, AWS::NoValue), Fn::If, Fn::Equals, Fn::Not, Fn::And,
Fn::Or, Condition, Fn::Sub (both forms), Fn::Select, Fn::Split, Fn::GetAtt (a placeholder) and
the template's Rules. Anything else raises, so a new intrinsic cannot pass unevaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

NO_VALUE: Any = object()
PSEUDO = {
    "AWS::Region": "ap-south-1",
    "AWS::StackName": "sluice",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
}
_SUB = re.compile(r"\$\{([^}!]+)\}")


@dataclass
class Stack:
    """A template with parameter values: defaults, overridden by `values`."""

    template: dict[str, Any]
    values: dict[str, Any]

    @classmethod
    def of(cls, template: dict[str, Any], **overrides: Any) -> Stack:
        values: dict[str, Any] = dict(PSEUDO)
        for name, spec in template["Parameters"].items():
            if "Default" in spec:
                values[name] = spec["Default"]
        unknown = set(overrides) - set(template["Parameters"])
        assert not unknown, f"not parameters of the template: {unknown}"
        values.update(overrides)
        return cls(template, values)

    def condition(self, name: str) -> bool:
        return bool(self.eval(self.template["Conditions"][name]))

    def failed_rules(self) -> list[str]:
        """Names of the Rules whose condition holds and some assertion does not."""
        failed = []
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.eval(rule["RuleCondition"]):
                continue
            if not all(self.eval(a["Assert"]) for a in rule["Assertions"]):
                failed.append(name)
        return failed

    def eval(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.eval(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::") or key == "Condition":
                return self._intrinsic(key, arg)
        return {
            k: v
            for k, v in ((k, self.eval(item)) for k, item in value.items())
            if v is not NO_VALUE
        }

    def _intrinsic(self, key: str, arg: Any) -> Any:
        handler = getattr(self, "_" + key.removeprefix("Fn::").lower(), None)
        if handler is None:
            raise AssertionError(f"the evaluator does not know {key}")
        return handler(arg)

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.template["Resources"]:
            return f"<{name}>"  # a resource's physical id, known only once created
        return self.values[name]

    def _condition(self, name: str) -> bool:  # pack.load_cfn spells !Condition Fn::Condition
        return self.condition(name)

    def _if(self, arg: list[Any]) -> Any:
        name, then, otherwise = arg
        return self.eval(then if self.condition(name) else otherwise)

    def _equals(self, arg: list[Any]) -> bool:
        left, right = (self.eval(a) for a in arg)
        return str(left) == str(right)

    def _not(self, arg: list[Any]) -> bool:
        (only,) = arg
        return not self.eval(only)

    def _and(self, arg: list[Any]) -> bool:
        return all(self.eval(a) for a in arg)

    def _or(self, arg: list[Any]) -> bool:
        return any(self.eval(a) for a in arg)

    def _select(self, arg: list[Any]) -> Any:
        index, items = arg
        return self.eval(items)[int(self.eval(index))]

    def _split(self, arg: list[Any]) -> list[str]:
        separator, text = arg
        return str(self.eval(text)).split(separator)

    def _getatt(self, arg: list[str]) -> str:
        resource, attribute = arg
        return f"<{resource}.{attribute}>"

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else arg
        local = {name: self.eval(v) for name, v in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if name in self.values:
                return str(self.values[name])
            return match.group(0)  # an IAM policy variable such as ${aws:userid}

        return _SUB.sub(one, text)
