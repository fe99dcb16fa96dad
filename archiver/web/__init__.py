"""The auditors' desk: ``archiver browse``, a read-only web UI over the archive.

It reads through the audit views and the stores it is handed, and writes only its access trail;
it never imports the write path (``archiver.archive``), the service or the composition root
(the layer contract in ``pyproject.toml`` says so).
"""
