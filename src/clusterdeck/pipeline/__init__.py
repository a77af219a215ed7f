"""The node pipeline: every node's bootstrap phases run over SSH through the DAG executor.

It sits between the api facade and the layers it combines (bootstrap renders, transport
reaches nodes, engine schedules). It knows nothing of providers beyond the ``node/<name>``
records they write: an address and how to log in.
"""

from clusterdeck.pipeline.run import BootstrapResult, bootstrap, fetch_kubeconfig, live_status

__all__ = ["BootstrapResult", "bootstrap", "fetch_kubeconfig", "live_status"]
