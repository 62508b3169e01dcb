"""The S3 adapter: the object store client (ranged reads, tickets, result uploads), each service's and
owner's S3 user with its grants, and the bucket notification wiring (MinIO and Ceph RGW)."""
