"""The user's file: typed models, naming rules, semantic rules and the loader.

Import from here; the submodules are split by job (models, rules, loader, network layout).
"""

from clusterdeck.spec.loader import ValidationReport, check_bytes, check_file, load_file, load_text
from clusterdeck.spec.models import Environment

__all__ = ["Environment", "ValidationReport", "check_bytes", "check_file", "load_file", "load_text"]
