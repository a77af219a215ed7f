"""The node agent: bootstraps a stateless node at boot (``clusterdeck agent``).

It runs on the node itself, as root, from the systemd unit ``pxe render`` writes. It renders
the same typed node config and phase scripts the SSH path pushes (``bootstrap.render``), with
the facts of its own machine, and runs them locally. Control planes elect the one that runs
``kubeadm init`` through the coordination directory; join material travels there as 0600
secrets with their expiry.
"""
