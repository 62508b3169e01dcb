"""What every process needs around its work: settings, structured logs, metrics, failpoints for the
fault tests, process tuning, and the one polling loop."""
