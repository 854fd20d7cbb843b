"""The model directory: a self-contained, versioned, checksummed artifact."""
