"""zklint: find and fix ZooKeeper (kazoo) hazards in Python code."""

__version__ = "0.1.0"
