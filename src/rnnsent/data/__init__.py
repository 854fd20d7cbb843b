"""Datasets: where they come from, how they are read, cached, split and batched."""
