"""Offline bundles: everything a node needs to join a cluster without downloading anything."""
