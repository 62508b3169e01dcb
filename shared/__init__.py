"""Common code of the Genobase services and CLI, in layers (docs/architecture.md, "Layout").

``domain`` (the model, no I/O) and ``parsing`` (the engine) at the centre; ``usecases`` (the
service layer) over the domain's ports; ``postgres``, ``rabbitmq`` and ``s3`` (one adapter package
per server); ``web`` (the HTTP edge) and ``runtime`` (settings, logs, metrics, failpoints).
Nothing in here imports a service; tests/unit/test_import_rules.py checks what each layer imports.
"""
