"""The micro-batcher on its own: grouping, order, limits and failures."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from rnnsent.serve.batching import MicroBatcher


def run_batcher(score, requests, max_batch_texts=1024):
    """Submit all ``requests`` at once; returns (results per request, or the exception)."""

    async def main():
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(score, executor, max_batch_texts)
            batcher.start()
            try:
                return await asyncio.gather(*(batcher.submit(texts) for texts in requests), return_exceptions=True), batcher
            finally:
                await batcher.stop()

    return asyncio.run(main())


def test_requests_submitted_together_share_one_call_in_order():
    calls = []

    def score(texts):
        calls.append(list(texts))
        return [text.upper() for text in texts]

    requests = [["a"], ["b", "c"], ["d"], ["e", "f", "g"]]
    results, batcher = run_batcher(score, requests)
    assert calls == [["a", "b", "c", "d", "e", "f", "g"]]
    assert results == [["A"], ["B", "C"], ["D"], ["E", "F", "G"]]
    assert batcher.stats.to_dict()["mean_requests_per_call"] == 4.0


def test_calls_never_exceed_max_batch_texts():
    calls = []

    def score(texts):
        calls.append(len(texts))
        return texts

    requests = [["x"] * 3 for _ in range(5)]
    results, _ = run_batcher(score, requests, max_batch_texts=7)
    assert calls == [6, 6, 3]  # two requests of 3 fit in 7; the third opens the next call
    assert results == requests


def test_a_failed_call_fails_its_requests_and_the_batcher_goes_on():
    def score(texts):
        if "bad" in texts:
            raise RuntimeError("boom")
        return texts

    async def main():
        with ThreadPoolExecutor(max_workers=1) as executor:
            batcher = MicroBatcher(score, executor)
            batcher.start()
            try:
                with pytest.raises(RuntimeError, match="boom"):
                    await batcher.submit(["bad"])
                return await batcher.submit(["good"])
            finally:
                await batcher.stop()

    assert asyncio.run(main()) == ["good"]
