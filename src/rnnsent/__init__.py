"""rnnsent: train, evaluate, explain and serve recurrent-network text classifiers."""

__version__ = "0.1.0"


def load(path):
    """Load a saved model directory for prediction: ``rnnsent.load("runs/seed").predict(["..."])``."""
    from rnnsent.inference.predictor import Predictor

    return Predictor.load(path)


__all__ = ["__version__", "load"]
