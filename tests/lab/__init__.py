"""The clusterdeck test lab: real hosts on this machine (test support, not product code).

Light hosts (:mod:`tests.lab.light`) are network namespaces with a private mount and UTS
namespace and a real sshd each; full hosts (:mod:`tests.lab.full`) are systemd-nspawn machines
booted on such namespaces. ``python -m tests.lab up N`` / ``down`` drive it by hand; the pytest
fixtures are in :mod:`tests.lab.fixtures`.
"""

from tests.lab.light import Lab, LabHost, remove_all

__all__ = ["Lab", "LabHost", "remove_all"]
