"""ccall recording archiver: a complete, verifiable archive of a ccall.vn PBX's recordings."""

# The one place the version is written (pyproject.toml reads it from here): reading it from the
# installed metadata costs every start of the daemon ~40 ms of imports.
__version__ = "0.2.0"

__all__ = ["__version__"]
