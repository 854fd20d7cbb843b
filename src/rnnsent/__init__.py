"""rnnsent: train, evaluate, explain and serve recurrent-network text classifiers.

    import rnnsent
    model = rnnsent.train(preset="seed", out="runs/seed")
    model.predict(["A wonderful film.", "Dull."])
    rnnsent.evaluate(model)
    rnnsent.load("runs/seed")

Importing the package imports nothing heavy: the API (:mod:`rnnsent.api`), and torch with it,
is imported on first use of one of its names.
"""

__version__ = "0.2.0"

API = ("Model", "evaluate", "export", "load", "pretrain", "summary", "train", "tune")


def __getattr__(name: str):
    if name in API:
        from rnnsent import api

        return getattr(api, name)
    raise AttributeError(f"module 'rnnsent' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])


__all__ = ["__version__", *API]
