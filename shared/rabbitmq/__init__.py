"""The RabbitMQ adapter: confirming publishers, the consumer that checks every message before a
handler sees it and acknowledges after commit, the topology and the dead letters."""
