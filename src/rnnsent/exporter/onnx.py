"""A loaded model as an ONNX file and its deployment settings (``FILE.json``), checked by onnxruntime before they are written.

The graph takes ``ids (batch, time)`` int64 and ``lengths (batch,)`` int64, both axes dynamic,
and returns ``probabilities (batch, K)`` float32 (see :class:`rnnsent.exporter.graph.ProbabilityGraph`);
the n-gram features of a model with an n-gram branch are hashed from the ids inside the graph.
``FILE.json`` holds what turns raw text into those inputs (:mod:`rnnsent.exporter.deployment`).

The graph is traced by torch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``).
torch 2.13's default, the ``torch.export``-based exporter, was tried on the same models and
left out: with named ``torch.export.Dim`` axes, onnxruntime refused every other batch or width
for the simple cell and for bidirectional GRU and LSTM graphs; with ``Dim.DYNAMIC`` it refused
to export the simple (Keras) cell (its dynamic axes conflicted with the ranges it inferred) and
fixed a shape of the n-gram hash so that one-token rows failed in onnxruntime; and it took 10 to
40 s per tiny model against under 1 s. The TorchScript-based one gave correct graphs for all.

Before anything is written, onnxruntime scores :data:`CHECK_ROWS` rows of every length from 1 to
``maxlen`` and the largest difference from rnnsent's own probabilities of the same rows is
reported with the result.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnsent import __version__
from rnnsent.artifact.files import write_bytes_atomic
from rnnsent.errors import UsageError
from rnnsent.exporter import require_export_extra
from rnnsent.exporter.deployment import INPUT_NAMES, OUTPUT_NAME, deployment_settings
from rnnsent.exporter.graph import IntegerXorAsOnnx, ProbabilityGraph
from rnnsent.inference.predictor import Predictor
from rnnsent.model.scoring import predict_logits
from rnnsent.text.encoder import pad_rows
from rnnsent.text.vocabulary import START_ID

# BitwiseXor, which the n-gram hash needs, is in ONNX from opset 18.
OPSET = 18
CHECK_ROWS = 64
# One protobuf message holds at most 2 GiB; leave room for the graph beside the weights.
MAX_WEIGHT_BYTES = 2**31 - 2**26
DYNAMIC_AXES = {INPUT_NAMES[0]: {0: "batch", 1: "time"}, INPUT_NAMES[1]: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote, and how closely onnxruntime reproduces rnnsent on the check rows."""

    path: Path
    settings_path: Path
    size_bytes: int
    outputs: int
    check_rows: int
    max_difference: float


def settings_path_for(path: Path) -> Path:
    """Where the deployment settings of the graph at ``path`` go: the same name with ``.json`` added."""
    return path.with_name(path.name + ".json")


def export_onnx(predictor: Predictor, out: str | Path) -> OnnxExport:
    """Write ``predictor``'s model as the ONNX graph ``out`` and its deployment settings as ``out.json``.

    Raises :class:`~rnnsent.errors.MissingExtraError` without the ``export`` extra and
    :class:`~rnnsent.errors.UsageError` for what cannot be exported (a quantized model, weights
    beyond ONNX's 2 GiB, ``out`` naming a directory).
    """
    require_export_extra()
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"{out} is a directory: --out names the ONNX file to write (e.g. {out / 'model.onnx'})")
    model = exportable_copy(predictor.model)
    artifact = predictor.artifact
    graph = ProbabilityGraph(model, artifact.labels.task, artifact.temperature).eval()
    ids, lengths = check_rows(predictor)
    # Traced on two rows (the longest and the shortest); the check then scores 64, so a batch
    # size the trace had fixed would fail it.
    proto = _trace(graph, ids[[-1, 0]], lengths[[-1, 0]], artifact)
    data = proto.SerializeToString()
    difference = _max_difference(predictor, data, ids, lengths)
    settings = deployment_settings(artifact, out.name, OPSET)
    write_bytes_atomic(out, data)
    settings_path = settings_path_for(out)
    write_bytes_atomic(settings_path, (json.dumps(settings, indent=1) + "\n").encode("utf-8"))
    return OnnxExport(out, settings_path, len(data), artifact.labels.num_outputs, len(ids), difference)


def exportable_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A float32 CPU copy of ``model`` in eval mode; :class:`UsageError` for what ONNX export cannot take."""
    quantized = sorted({type(m).__name__ for m in model.modules()
                        if type(m).__module__.startswith(("torch.ao.nn.quantized", "rnnsent.model.quantize"))})
    if quantized:
        raise UsageError(f"a quantized model cannot be exported ({', '.join(quantized)}): load it without quantize=True "
                         "and export its float weights")
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if weight_bytes > MAX_WEIGHT_BYTES:
        raise UsageError(f"the model's weights take {weight_bytes / 2**30:.1f} GiB, beyond the 2 GiB of one ONNX file; "
                         "train it with fewer --ngram-buckets or a smaller --num-words")
    return copy.deepcopy(model).to("cpu").float().eval()


def check_rows(predictor: Predictor, count: int = CHECK_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` rows as the encoder pads them, of lengths spread from 1 to ``maxlen``: ``(ids (count, maxlen), lengths (count,))``.

    Each row is the start id followed by random ids of the vocabulary (the out-of-vocabulary id
    among them), drawn from a generator of its own so that no global random state changes.
    """
    text = predictor.config.text
    generator = torch.Generator().manual_seed(seed)
    sizes = [1 + (index * (text.maxlen - 1)) // max(count - 1, 1) for index in range(count)]
    vocab_size = predictor.artifact.vocabulary.size
    rows = [[START_ID, *torch.randint(START_ID + 1, max(vocab_size, START_ID + 2), (size - 1,), generator=generator).tolist()]
            for size in sizes]
    return pad_rows(rows, text.maxlen, text.padding)


def _trace(graph: ProbabilityGraph, ids: np.ndarray, lengths: np.ndarray, artifact):
    """The ONNX model of ``graph`` traced on example rows, with both inputs declared and rnnsent's metadata."""
    import onnx

    buffer = io.BytesIO()
    with torch.no_grad(), IntegerXorAsOnnx(), warnings.catch_warnings():
        # The exporter warns that it is the older of torch's two, that recurrent layers traced at
        # one batch size may fail at another, and that nn.RNNBase's argument checks become
        # constants; the onnxruntime check on rows of another batch and width is what tells.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (torch.from_numpy(ids), torch.from_numpy(lengths)), buffer, dynamo=False,
                          opset_version=OPSET, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                          dynamic_axes=DYNAMIC_AXES)
    proto = onnx.load_from_string(buffer.getvalue())
    _declare_inputs(proto)
    labels = artifact.labels
    proto.doc_string = (f"rnnsent model: {OUTPUT_NAME} (batch, {labels.num_outputs}) of {labels.task} labels "
                        f"{', '.join(labels.names)}; the tokenizer and vocabulary are in the .json file beside it")
    for key, value in {"task": labels.task, "labels": json.dumps(list(labels.names)), "rnnsent_version": __version__,
                       "preset": artifact.config.preset}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    return proto


def _declare_inputs(proto) -> None:
    """Declare ``lengths`` as the graph's second input when the model never reads it.

    The tracer keeps only inputs the computation uses, and a model without ``use_lengths``
    reads the padding like any token, so its trace has no ``lengths``; every exported graph
    takes the same two inputs all the same.
    """
    import onnx

    names = [value.name for value in proto.graph.input]
    if INPUT_NAMES[1] in names:
        return
    declared = onnx.helper.make_tensor_value_info(INPUT_NAMES[1], onnx.TensorProto.INT64, ["batch"])
    inputs = [*proto.graph.input]
    del proto.graph.input[:]
    proto.graph.input.extend([inputs[0], declared, *inputs[1:]])


def _max_difference(predictor: Predictor, data: bytes, ids: np.ndarray, lengths: np.ndarray) -> float:
    """The largest ``|p_onnxruntime - p_rnnsent|`` over the rows' probabilities."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: lengths})[0]
    want = predictor.to_probabilities(predict_logits(predictor.model, ids, lengths)).reshape(len(ids), -1)
    return float(np.abs(got - want).max()) if len(ids) else 0.0
