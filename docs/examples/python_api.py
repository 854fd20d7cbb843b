# %% [markdown]
# # rnnsent from Python
#
# A notebook in the "percent" format: open it in Jupyter (with jupytext) or VS Code and run
# it cell by cell, or run it as a script, `python docs/examples/python_api.py`. It trains on
# `$RNNSENT_EXAMPLE_DATA` (a CSV or JSONL file with `text` and `label`, or aclImdb) and
# writes into `$RNNSENT_EXAMPLE_OUT` (default `runs/example`). The test suite runs it on a
# small made-up CSV.

# %%
import os

import rnnsent

data = os.environ.get("RNNSENT_EXAMPLE_DATA")  # None: $RNNSENT_DATA, the cache, or a download of aclImdb
out = os.environ.get("RNNSENT_EXAMPLE_OUT", "runs/example")

# %% [markdown]
# ## Train
# A preset is a starting recipe; any setting is a keyword (the same names as the command's
# flags, with underscores). A mistyped name or a value out of range raises a `ValueError`
# with a one-line message, before anything is read or trained.

# %%
try:
    rnnsent.train(data=data, out=out, hidden_sise=16)
except ValueError as error:
    print("refused:", error)

# %%
model = rnnsent.train(preset="seed", data=data, out=out, maxlen=20, embedding_dim=16, hidden_size=8,
                      epochs=4, lr=0.005, batch_size=16, threads=1, progress=False)
print(model)
print(f"test accuracy {model.metrics['accuracy']:.4f} after {len(model.history)} epochs")
for row in model.history:
    print(row["epoch"], round(row["loss"], 4), round(row["accuracy"], 4))

# %% [markdown]
# ## Predict and explain
# Raw text in: the training preprocessing travels inside the model.

# %%
for prediction in model.predict(["A wonderful, moving film.", "Boring and far too long."]):
    print(prediction.label, round(prediction.probability, 4))

explanation = model.explain("Great acting, but the plot was dull.")
for token, influence in zip(explanation.tokens, explanation.influence):
    print(f"{token:>10}  {influence if influence is None else round(influence, 3)}")

# %% [markdown]
# ## Evaluate, save, load
# `rnnsent.evaluate` scores the model on the test split and returns its metrics; printed, they
# read as the command line's report.

# %%
metrics = rnnsent.evaluate(model, data)
print(metrics)

copy = model.save(out + "-copy")
again = rnnsent.load(copy)
assert again.probabilities(["A wonderful film."]).tolist() == model.probabilities(["A wonderful film."]).tolist()
