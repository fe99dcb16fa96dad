"""The configuration: its models and checks (``models``), and reading a file (``load``)."""
