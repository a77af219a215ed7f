"""How stateless nodes agree without clusterdeck watching: leases, join material, reports.

Why it exists: nodes that boot from the network into RAM bootstrap themselves, so one of them
must run ``kubeadm init`` and hand the others what they need to join. They meet at a
coordination point behind one interface (:class:`~clusterdeck.coordination.base.Coordinator`);
the first is a directory every node mounts (:mod:`clusterdeck.coordination.shared_dir`).
"""

from clusterdeck.coordination.base import Coordinator, Lease
from clusterdeck.coordination.shared_dir import SharedDirectory

__all__ = ["Coordinator", "Lease", "SharedDirectory"]
