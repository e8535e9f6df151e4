"""Labels, users, the read policy and the audit log."""

from casemate.security.labels import BOTTOM, Label, Level, format_label, lub, parse_label
from casemate.security.policy import ROLES, User, can_read

__all__ = ["BOTTOM", "Label", "Level", "ROLES", "User", "can_read", "format_label", "lub", "parse_label"]
