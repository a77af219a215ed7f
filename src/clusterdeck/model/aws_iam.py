"""The node role and instance profile for Systems Manager: names, keys, policy, trust.

Shared by the planner (what to create) and the aws provider (what to find, create and delete),
so both always agree. IAM names are global to the account, not regional, so the region is part
of the name: the same environment name in two regions must not share one role.
"""

from __future__ import annotations

import json

ROLE_KEY = "iam/role"
PROFILE_KEY = "iam/instance-profile"
# The managed policy AWS documents for instances Session Manager reaches: the SSM agent's own
# calls (ssm, ssmmessages, ec2messages), nothing else
SSM_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


def node_profile_name(environment: str, region: str) -> str:
    """The role's and the instance profile's name (IAM allows 64 characters for a role)."""
    return f"clusterdeck-{environment}-{region}-node"[:64].rstrip("-")
