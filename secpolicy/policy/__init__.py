"""Policies: the shipped JSON Schema, the YAML loader, waivers and framework coverage."""

from secpolicy.policy.loader import PolicyErrors, find_policy_files, load_policies
from secpolicy.rules import Policy, PolicySet, Rule, RuleTest, SequenceSpec, Threshold

__all__ = [
    "Policy",
    "PolicyErrors",
    "PolicySet",
    "Rule",
    "RuleTest",
    "SequenceSpec",
    "Threshold",
    "find_policy_files",
    "load_policies",
]
