# One image for the services, the migration step and the notification set-up.
FROM python:3.11-slim
WORKDIR /app
# A compiler and OpenSSL's headers build the C loops (the parsing engine's, shared/parsing/_native.c,
# the parser's batch rows, services/parser/_batch_rows.c, and the persister's COPY rows,
# shared/postgres/_copy_rows.c);
# they are removed again once the package is installed.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
# constraints.txt: the exact versions the tests ran with (scripts/lock.sh refreshes it), so that two
# builds a month apart install the same ones.
COPY pyproject.toml README.md constraints.txt ./
COPY shared ./shared
COPY services ./services
COPY genobase ./genobase
COPY infra ./infra
RUN pip install --no-cache-dir -c constraints.txt . && useradd --system genobase \
    && apt-get purge -y --auto-remove gcc libc6-dev libssl-dev
USER genobase
ENV PYTHONUNBUFFERED=1
