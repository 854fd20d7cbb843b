"""Data-parallel training: 2 gloo processes on loopback against 1 process, and a torchrun run."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from rnnsent.config import RunOptions, build_config
from rnnsent.data.batches import epoch_batches
from rnnsent.data.corpus import EncodedSplit
from rnnsent.labels import LabelSpace
from rnnsent.model.build import build_model
from rnnsent.training.distributed import setup, teardown
from rnnsent.training.pipeline import train_tensors
from rnnsent.training.tensors import Tensors, TrainingData

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "src"
VOCAB_SIZE = 40
MAXLEN = 12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_data(count: int, classes: int = 2) -> TrainingData:
    """Post-padded random id rows labelled by whether id 7 occurs: learnable, so every step moves the weights.

    With three classes the label counts which of ids 7 and 8 occur (0, 1 or 2). 30 unlabelled
    texts of random ids go with them, read by the variants with unlabelled batches.
    """
    generator = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, VOCAB_SIZE, (count, MAXLEN), generator=generator)
    ids[:, 0] = 1
    lengths = torch.randint(3, MAXLEN + 1, (count,), generator=generator)
    ids[torch.arange(MAXLEN)[None, :] >= lengths[:, None]] = 0
    labels = (ids == 7).any(dim=1).float()
    text_lengths = np.random.default_rng(5).integers(2, 2 * MAXLEN, size=30)
    offsets = np.concatenate([[0], np.cumsum(text_lengths)])
    flat = np.random.default_rng(6).integers(3, VOCAB_SIZE, size=int(offsets[-1])).astype(np.int32)
    flat[offsets[:-1]] = 1
    unlabelled = EncodedSplit(flat, offsets, np.zeros(30, dtype=np.int64))
    if classes == 2:
        return TrainingData(Tensors(ids, lengths, labels), None, None, unlabelled=unlabelled)
    labels = labels.long() + (ids == 8).any(dim=1).long()
    return TrainingData(Tensors(ids, lengths, labels), None, None, LabelSpace("multiclass", ("0", "1", "2"), True),
                        unlabelled)


# Variants compared between 2 processes (batch 8 each) and 1 process (batch 16), as
# (settings, training reviews). With count 89 each epoch ends on a batch of 9, split 5 + 4.
VARIANTS = {
    # The seed recipe: RMSprop with lazy sparse embedding rows, all-reduced sparse under DDP.
    "seed-rmsprop": ({}, 96),
    # RMSprop with eps 1 is plain gradient descent, so a wrongly scaled gradient cannot hide
    # behind the optimiser's normalisation; with clipping, true lengths (so ranks cut their
    # shares to different widths), an uneven last batch, and dense embedding gradients as DDP
    # uses on GPUs (nccl cannot all-reduce sparse ones).
    "gradient-descent": ({"eps": 1.0, "lr": 0.5, "clip_norm": 0.5, "padding": "post", "truncating": "post",
                          "use_lengths": True, "sparse_embedding": False}, 89),
    # A stacked n-gram branch: frozen weights and the blend buffer, which DDP must leave alone.
    "frozen-ngram-branch": ({"optimizer": "adam", "cell": "gru", "padding": "post", "use_lengths": True,
                             "ngram_buckets": 31, "ngram_fit": "stacked", "validation_split": 0.1}, 96),
    # Three classes: a softmax head of three outputs and its cross-entropy, with an uneven last batch.
    "three-classes": ({"optimizer": "adam", "cell": "gru", "padding": "post", "use_lengths": True}, 89, 3),
    # The adversarial, virtual adversarial and entropy losses in one module under DDP, the last
    # two on 7 unlabelled texts per step (4 + 3 per rank): each rank's terms weighted by its
    # share, and the power iteration's noise the same for a row on either side.
    "objectives": ({"optimizer": "adam", "cell": "gru", "padding": "post", "use_lengths": True,
                    "adversarial_weight": 1.0, "adversarial_norm": 0.5, "virtual_adversarial_weight": 1.0,
                    "entropy_weight": 0.3, "unlabelled_batch_size": 7}, 89),
    # Distillation from a stacked model's n-gram branch (left at zero here: every text's target
    # is one half) on 7 unlabelled texts per step, each rank's share weighted by its size.
    "distillation": ({"optimizer": "adam", "cell": "gru", "padding": "post", "use_lengths": True,
                      "ngram_buckets": 31, "ngram_fit": "stacked", "validation_split": 0.1,
                      "distill_weight": 2.0, "unlabelled_batch_size": 7}, 89),
    # The same on the labelled rows, with RMSprop's sparse embedding gradients (all-reduced by gloo).
    "objectives-on-labelled-rows": ({"adversarial_weight": 0.5, "adversarial_norm": 0.3,
                                     "virtual_adversarial_weight": 1.0, "entropy_weight": 0.3}, 96),
}
BATCH_SIZE, STEPS = 16, 8


OPTIONS = RunOptions(threads=1, max_steps=STEPS)


def equivalence_config(settings: dict):
    return build_config("seed", {
        "num_words": VOCAB_SIZE, "maxlen": MAXLEN, "batch_size": BATCH_SIZE, "epochs": 3,
        "report_test": False, "lr": 1e-2, "seed": 7, **settings,
    })


def run_rank(rank: int, port: int, out_dir: str) -> None:
    """One rank of a 2-process run: join the group as torchrun would, train each variant, rank 0 saves."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    world = setup("cpu")
    try:
        for name, (settings, count, *classes) in VARIANTS.items():
            result = train_tensors(equivalence_config(settings), OPTIONS, tiny_data(count, *classes), Path(out_dir) / name,
                                   world=world)
            if world.is_main:
                weights = {key: value.contiguous() for key, value in result.model.state_dict().items()}
                save_file(weights, str(Path(out_dir) / f"{name}.safetensors"))
    finally:
        teardown(world)


@pytest.fixture(scope="module")
def two_process_weights(tmp_path_factory) -> Path:
    """Train every variant once on 2 gloo processes (one spawn for all: starting torch is the slow part)."""
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(run_rank, args=(free_port(), str(out_dir)), nprocs=2, join=True)
    return out_dir


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_processes_match_one_process_with_the_global_batch(two_process_weights, tmp_path, variant):
    settings, count, *classes = VARIANTS[variant]
    config = equivalence_config(settings)
    distributed = load_file(str(two_process_weights / f"{variant}.safetensors"))
    data = tiny_data(count, *classes)
    single = train_tensors(config, OPTIONS, data, tmp_path).model.state_dict()
    torch.manual_seed(config.train.seed)
    initial = build_model(config.model, VOCAB_SIZE, labels=data.labels).state_dict()
    assert set(distributed) == set(single)
    moved = 0.0
    for name, value in single.items():
        torch.testing.assert_close(distributed[name], value, rtol=1e-4, atol=1e-6, msg=f"{variant}: {name} differs")
        moved = max(moved, float((value - initial[name]).abs().max()))
    assert moved > 1e-3, "training did not change the weights, so the comparison proves nothing"


@pytest.mark.parametrize("count, batch_size, world_size", [(90, 16, 2), (100, 32, 4), (7, 4, 2)])
def test_rank_shares_partition_the_global_batches(count, batch_size, world_size):
    for epoch in range(2):
        whole = epoch_batches(count, batch_size, seed=3, epoch=epoch)
        shares = [epoch_batches(count, batch_size, 3, epoch, rank=rank, world_size=world_size) for rank in range(world_size)]
        kept = [batch for batch in whole if len(batch) >= world_size]
        assert all(len(rank_batches) == len(kept) for rank_batches in shares)
        for index, batch in enumerate(kept):
            joined = np.concatenate([shares[rank][index] for rank in range(world_size)])
            assert sorted(joined.tolist()) == sorted(batch.tolist())


def test_torchrun_two_processes_write_an_artifact_that_predicts(tmp_path):
    rng = random.Random(5)
    positive, negative = "great wonderful superb loved".split(), "awful boring terrible hated".split()
    filler = "the film a plot was and it actor".split()
    with open(tmp_path / "reviews.jsonl", "w") as handle:
        for index in range(240):
            label = index % 2
            words = [rng.choice(filler) for _ in range(6)] + [rng.choice(positive if label else negative)] * 2
            rng.shuffle(words)
            handle.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")
    env = {**os.environ, "PYTHONPATH": str(SOURCE_ROOT), "RNNSENT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "model"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
        "--master-port", str(free_port()), "-m", "rnnsent", "train", "--data", str(tmp_path / "reviews.jsonl"),
        "--out", str(out), "--preset", "seed", "--epochs", "1", "--num-words", "50", "--maxlen", "10", "--batch-size", "16",
        "--lr", "0.01", "--threads", "1", "--quiet",
    ]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    # Only rank 0 logs: each line of the run's report appears once.
    assert finished.stdout.count("epoch 1/1") == 1, finished.stdout
    assert finished.stdout.count("model saved to") == 1, finished.stdout
    assert "sparse embedding updates are off" not in finished.stdout  # gloo all-reduces sparse rows

    from rnnsent.artifact.directory import load_artifact
    from rnnsent.inference.predictor import Predictor

    artifact = load_artifact(out)
    assert artifact.metrics["count"] == 48
    predictor = Predictor(artifact)
    probabilities = predictor.probabilities(["great wonderful film", "awful boring film", ""])
    assert probabilities.shape == (3,) and np.all((probabilities > 0) & (probabilities < 1))
