"""Operator tooling: the ``genobase`` CLI and the native stack it brings up."""
