"""Common code of the Genobase services: settings, logging, messages, parsing engine and adapters.

Nothing in here imports a service; services meet only through the message models defined here.
"""
