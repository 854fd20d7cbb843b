from rnnsent.config import build_config
from rnnsent.model import RecurrentClassifier, count_parameters


def test_seed_parameter_count():
    config = build_config("seed")
    assert count_parameters(RecurrentClassifier(config.model, config.text.num_words)) == 1_000_286
