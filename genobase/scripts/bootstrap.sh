#!/usr/bin/env bash
# Makes a Debian machine able to run the native stack: installs what is missing with apt and starts
# PostgreSQL and RabbitMQ where nothing listens on their ports. Idempotent; leaves running servers alone.
# Prints "started=<names>" on its last line so that the caller can stop only what it started.
set -euo pipefail

PG_PORT=${PG_PORT:-5432}
AMQP_PORT=${AMQP_PORT:-5672}
started=()

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need=()
command -v radosgw >/dev/null || need+=(radosgw)
command -v ceph-mon >/dev/null || need+=(ceph-mon)
command -v ceph-osd >/dev/null || need+=(ceph-osd)
command -v uuidgen >/dev/null || need+=(uuid-runtime)
command -v curl >/dev/null || need+=(curl)
listening "$PG_PORT" || command -v pg_ctlcluster >/dev/null || need+=(postgresql)
listening "$AMQP_PORT" || command -v rabbitmq-server >/dev/null || need+=(rabbitmq-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

if ! listening "$PG_PORT"; then
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
  started+=(postgresql)
fi
if ! listening "$AMQP_PORT"; then
  rabbitmq-server -detached >&2
  started+=(rabbitmq)
fi
for _ in $(seq 1 120); do listening "$PG_PORT" && listening "$AMQP_PORT" && break; sleep 0.5; done
listening "$PG_PORT" || { echo "PostgreSQL is not listening on $PG_PORT" >&2; exit 1; }
listening "$AMQP_PORT" || { echo "RabbitMQ is not listening on $AMQP_PORT" >&2; exit 1; }
# rabbitmq answers on the port before it accepts logins
timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || true
echo "started=${started[*]:-}"
