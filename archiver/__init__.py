"""ccall recording archiver: a complete, verifiable archive of a ccall.vn PBX's recordings."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ccall-archiver")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
