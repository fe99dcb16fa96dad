"""The write path: read the API, archive each call (audio, then sidecar), close the days."""
