"""An exported ONNX graph against rnnsent on IMDB test reviews: the largest probability difference, and reviews/s.

    python -m benchmarks.onnx_export MODEL_DIR [--limit N] [--threads T]

Exports MODEL_DIR to a temporary file, reads the raw test reviews of ``$RNNSENT_DATA`` (a stratified
``--limit`` of them; 0: all 25,000) and scores them with ``rnnsent.load(MODEL_DIR).probabilities``
and with onnxruntime on the ids that ``docs/examples/onnx_deploy.py`` makes from the exported
settings. Prints the largest |p_onnxruntime - p_rnnsent|, how many labels differ, and reviews/s:
end to end from raw text, and the model alone on the same ids (rnnsent's scoring, length-sorted
batches of 256 for models that read true lengths, against onnxruntime on batches of 256 at full
width and, for those models, length-sorted and cut to each batch's longest row as rnnsent does).
Both run on ``--threads`` threads (default 1); the load average is printed beside the timings.
"""

from __future__ import annotations

import argparse
import runpy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import rnnsent
from rnnsent.data.download import resolve_source
from rnnsent.data.sources import read_corpus
from rnnsent.data.splits import limit_indices
from rnnsent.model.scoring import predict_logits

EXAMPLE = runpy.run_path(str(Path(__file__).resolve().parents[1] / "docs" / "examples" / "onnx_deploy.py"))
BATCH = 256


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 1)[0] if Path("/proc/loadavg").exists() else "?"


def timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def onnx_scores(session, ids: np.ndarray, lengths: np.ndarray, cut: bool) -> np.ndarray:
    """Probabilities ``(n, K)`` in batches of :data:`BATCH`; ``cut``: length-sorted batches as wide as their longest row."""
    order = np.argsort(lengths, kind="stable") if cut else np.arange(len(ids))
    out = np.zeros((len(ids), session.get_outputs()[0].shape[1]), dtype=np.float32)
    for start in range(0, len(ids), BATCH):
        chosen = order[start:start + BATCH]
        width = int(lengths[chosen].max()) if cut else ids.shape[1]
        out[chosen] = session.run(["probabilities"], {"ids": ids[chosen, :width], "lengths": lengths[chosen]})[0]
    return out


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = rnnsent.load(args.model, threads=args.threads)
    test = read_corpus(resolve_source(None)).test
    texts = [test.texts[i] for i in limit_indices(test.strata(), args.limit)]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        result, export_seconds = timed(lambda: model.export(path))
        print(f"exported {args.model} in {export_seconds:.1f} s: {result.size_bytes / 2**20:.1f} MiB, "
              f"check {result.max_difference:.1e} on {result.check_rows} rows (load average {load_average()})")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        settings = EXAMPLE["load_settings"](str(path))
        reads_lengths = settings["reads_lengths"]

        expected, rnnsent_seconds = timed(lambda: model.probabilities(texts).reshape(len(texts), -1))
        (ids, lengths), encode_seconds = timed(lambda: EXAMPLE["encode"](texts, settings))
        got, onnx_seconds = timed(lambda: onnx_scores(session, ids, lengths, cut=reads_lengths))
        assert np.array_equal((ids, lengths)[0], model.encoder.encode_batch(texts)[0])
        difference = np.abs(got - expected)
        labels = EXAMPLE["labels_of"](got, settings)
        differing = sum(chosen != ([p.label] if p.labels is None else p.labels)
                        for chosen, p in zip(labels, model.predict(texts)))
        print(f"{len(texts)} test reviews: max |dp| {difference.max():.2e}, mean {difference.mean():.2e}, "
              f"labels that differ: {differing}")
        print(f"end to end from raw text, {args.threads} thread(s): rnnsent {len(texts) / rnnsent_seconds:,.0f} reviews/s; "
              f"onnxruntime {len(texts) / (encode_seconds + onnx_seconds):,.0f} reviews/s "
              f"(encoding {encode_seconds:.2f} s in pure Python, graph {onnx_seconds:.2f} s) (load average {load_average()})")

        _, torch_model_seconds = timed(lambda: predict_logits(model.model, ids, lengths, BATCH))
        _, full_seconds = timed(lambda: onnx_scores(session, ids, lengths, cut=False))
        line = (f"model alone on the same ids: rnnsent {len(texts) / torch_model_seconds:,.0f} reviews/s; onnxruntime "
                f"{len(texts) / full_seconds:,.0f} reviews/s at full width ({ids.shape[1]} tokens)")
        if reads_lengths:
            _, cut_seconds = timed(lambda: onnx_scores(session, ids, lengths, cut=True))
            line += f", {len(texts) / cut_seconds:,.0f} reviews/s length-sorted and cut"
        print(f"{line} (load average {load_average()})")


if __name__ == "__main__":
    main()
