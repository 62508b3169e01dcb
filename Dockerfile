# One image for the four services, the migration step and the notification set-up.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY genobase ./genobase
COPY infra ./infra
RUN pip install --no-cache-dir . && useradd --system genobase
USER genobase
ENV PYTHONUNBUFFERED=1
