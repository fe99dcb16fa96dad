"""The long-running service: the supervisor, the daemon loop, shutdown, metrics, health, systemd."""
