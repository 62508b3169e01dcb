"""The service layer: what the HTTP services do for a caller, over the ports of ``shared/domain/ports.py``.

A use case takes its adapters as ports (never imports one), applies the domain's rules and returns
domain values; the routes parse requests into it and shape its answers into HTTP.
"""
