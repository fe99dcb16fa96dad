"""A ccall API simulator on loopback: realistic calls, real WAV recordings, switchable faults.

Used by ``archiver simulate``, ``archiver demo``, the tests and the benchmarks.
"""

from archiver.simulator.dataset import Dataset, SimCall, as_received
from archiver.simulator.dialect import Dialect
from archiver.simulator.faults import Faults
from archiver.simulator.server import DEMO_API_KEY, DEMO_API_SECRET, Simulator

__all__ = ["DEMO_API_KEY", "DEMO_API_SECRET", "Dataset", "Dialect", "Faults", "SimCall", "Simulator", "as_received"]
