"""The Postgres adapter: connections, migrations, the upload queries and the sequence COPY streams.

``connection`` opens sessions and replaces broken ones; ``migrate`` applies ``migrations/*.sql``;
``uploads`` holds every query of the upload state machine (its state sets come from
``shared/domain/uploads.py``); ``sequences`` copies records and parts in and out (its column lists come
from ``shared/domain/record_schema.py``), with ``binary_copy`` formatting a batch's rows in C.
"""
