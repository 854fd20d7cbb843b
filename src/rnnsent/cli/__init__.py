"""The ``rnnsent`` command: a thin shell over the Python API."""
