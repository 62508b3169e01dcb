"""The parsing engine: bytes of FASTA, FASTQ or CSV/TSV (plain or gzip) in, record events out.

Pure and self-contained: it imports nothing else of the project. ``engine`` is the front door.
"""
