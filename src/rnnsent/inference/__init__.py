"""Inference: raw text in, probabilities, metrics and explanations out."""
