"""The HTTP service: a JSON API, a micro-batcher and a web page."""
