"""Node bootstrap: typed configs (kubeadm, containerd, CNI, load balancer, cloud-init) and the
phase scripts rendered from them.

Rendering only: nothing here connects to a machine. The same rendered phases could be pulled
by a node agent at boot as well as pushed over SSH by :mod:`clusterdeck.pipeline`.
"""
