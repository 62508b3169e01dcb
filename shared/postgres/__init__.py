"""The Postgres adapter: the project's SQL is here, nowhere else (tests/unit/test_sql_rules.py).

``connection`` opens sessions and replaces broken ones; ``migrate`` applies ``migrations/*.sql``;
``uploads`` holds every query of the upload state machine (its state sets come from
``shared/domain/uploads.py``); ``sequences`` copies records and parts in and out (its column lists come
from ``shared/domain/record_schema.py``), with ``binary_copy`` formatting a batch's rows in C;
``keys`` keeps the API keys (``PostgresKeys``, the keys' use cases' ``KeyStore``); ``provision``
makes the stack's roles and database as the superuser.
"""
