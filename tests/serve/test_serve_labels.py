"""The service for every label space: /predict, /explain with a chosen class, /model, the page's
wording, the OpenAPI schema, and the API documentation served without internet access."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from label_models import KINDS, train_label_model
from rnnsent.inference.predictor import Predictor
from rnnsent.serve.app import create_app, docs_assets

API_KEY = "label-test-key"
IMDB_WORDS = re.compile(r"review|movie|film|positive|negative", re.IGNORECASE)


@pytest.fixture(scope="module")
def predictors(tmp_path_factory) -> dict[str, Predictor]:
    root = tmp_path_factory.mktemp("serve-labels")
    return {kind: Predictor.load(train_label_model(kind, root)) for kind in KINDS}


@pytest.fixture(scope="module")
def servers(predictors, tiny_predictor):
    """A server per label space, and one for the tiny sentiment model ("sentiment")."""
    from conftest import start_server

    started = {kind: start_server(create_app(predictor)) for kind, predictor in predictors.items()}
    started["sentiment"] = start_server(create_app(tiny_predictor))
    yield {kind: url for kind, (url, _) in started.items()}
    for _, stop in started.values():
        stop()


# ----------------------------------------------------------------------------- /model


def test_model_reports_task_labels_order_and_thresholds(servers, predictors):
    topics = httpx.get(f"{servers['topics']}/model").json()
    assert (topics["task"], topics["labels"], topics["ordered"], topics["sentiment"]) == (
        "multiclass", ["politics", "sports", "tech"], False, False)
    assert "thresholds" not in topics
    stars = httpx.get(f"{servers['stars']}/model").json()
    assert (stars["task"], stars["labels"], stars["ordered"]) == ("multiclass", ["1", "2", "3", "4", "5"], True)
    spam = httpx.get(f"{servers['spam']}/model").json()
    assert (spam["task"], spam["labels"], spam["sentiment"]) == ("binary", ["ham", "spam"], False)
    tags = httpx.get(f"{servers['tags']}/model").json()
    assert (tags["task"], tags["labels"]) == ("multilabel", ["politics", "sports", "tech"])
    expected = predictors["tags"].artifact.thresholds or [0.5, 0.5, 0.5]
    assert tags["thresholds"] == pytest.approx(dict(zip(tags["labels"], expected)))
    sentiment = httpx.get(f"{servers['sentiment']}/model").json()
    assert (sentiment["task"], sentiment["labels"], sentiment["ordered"], sentiment["sentiment"]) == (
        "binary", ["negative", "positive"], False, True)
    assert sentiment["page"] == {"title": "rnnsent: review sentiment, word by word",
                                 "placeholder": "Type or paste a review, then press Analyse (or Ctrl+Enter)",
                                 "noun": "review"}
    assert topics["page"]["title"] == "rnnsent: politics, sports or tech, word by word"
    assert tags["page"]["title"] == "rnnsent: politics, sports and tech labels, word by word"
    assert spam["page"]["title"] == "rnnsent: ham or spam, word by word"
    assert stars["page"]["title"] == "rnnsent: ratings 1 to 5, word by word"
    for info in (topics, stars, spam, tags):
        assert info["page"]["noun"] == "text"
        assert not IMDB_WORDS.search(info["page"]["title"] + info["page"]["placeholder"])


# ----------------------------------------------------------------------------- /predict


def test_predict_for_every_label_space(servers, predictors, tiny_predictor):
    cases = {"topics": ["the senate vote on the law", "a goal in the match", ""],
             "stars": ["an awful horrid film", "superb and brilliant"],
             "spam": ["a free prize for the winner", "lunch meeting report"],
             "tags": ["the senate vote and the goal match", "this chip app", "the a it was and"]}
    keys = {"topics": ["label", "probability", "empty", "probabilities"],
            "stars": ["label", "probability", "empty", "probabilities"],
            "spam": ["label", "probability", "empty"],
            "tags": ["label", "probability", "empty", "labels", "probabilities"]}
    for kind, texts in cases.items():
        response = httpx.post(f"{servers[kind]}/predict", json={"texts": texts})
        assert response.status_code == 200, response.text
        got = response.json()["predictions"]
        expected = [prediction.to_dict() for prediction in predictors[kind].predict(texts)]
        for row, want in zip(got, expected):
            assert list(row) == keys[kind]
            assert row["label"] == want["label"] and row["empty"] == want["empty"]
            assert row["probability"] == pytest.approx(want["probability"], abs=1e-6)
            if "probabilities" in want:
                assert list(row["probabilities"]) == list(predictors[kind].labels.names)
                assert row["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
            if "labels" in want:
                assert row["labels"] == want["labels"]
    assert [row["label"] for row in httpx.post(f"{servers['topics']}/predict", json={"texts": cases["topics"][:2]})
            .json()["predictions"]] == ["politics", "sports"]
    assert httpx.post(f"{servers['topics']}/predict", json={"texts": [""]}).json()["predictions"][0]["empty"]
    # Binary sentiment: exactly the fields it always had.
    sentiment = httpx.post(f"{servers['sentiment']}/predict", json={"texts": ["great fun", "awful mess"]}).json()
    assert [list(row) for row in sentiment["predictions"]] == [["label", "probability", "empty"]] * 2
    assert [row["label"] for row in sentiment["predictions"]] == [p.label for p in tiny_predictor.predict(
        ["great fun", "awful mess"])]


# ----------------------------------------------------------------------------- /explain


SENTIMENT_KEYS = ["text", "label", "probability", "empty", "truncated", "dropped_words", "tokens", "token_ids", "oov",
                  "special", "trajectory", "influence", "integrated_gradients"]


def assert_same_explanation(body: dict, expected: dict) -> None:
    assert list(body) == list(expected)
    for key, value in expected.items():
        if key in ("probability", "trajectory", "integrated_gradients"):
            assert body[key] == pytest.approx(value, abs=1e-5), key
        elif key == "influence":
            assert body[key][0] is None and body[key][1:] == pytest.approx(value[1:], abs=1e-5)
        elif key == "probabilities":
            assert list(body[key]) == list(value) and body[key] == pytest.approx(value, abs=1e-6)
        else:
            assert body[key] == value, key


def test_explain_any_class_of_a_multiclass_model(servers, predictors):
    text = "the senate vote on the law"
    default = httpx.post(f"{servers['topics']}/explain", json={"text": text}).json()
    assert_same_explanation(default, predictors["topics"].explain(text).to_dict())
    assert default["target"] == default["label"] == "politics"
    assert SENTIMENT_KEYS == list(default)[:len(SENTIMENT_KEYS)]
    assert list(default["probabilities"]) == ["politics", "sports", "tech"]
    chosen = httpx.post(f"{servers['topics']}/explain",
                        json={"text": text, "class": "sports", "integrated_gradients": True}).json()
    assert_same_explanation(chosen, predictors["topics"].explain(text, integrated_gradients=True,
                                                                 label="sports").to_dict())
    assert chosen["target"] == "sports" and chosen["label"] == "politics"
    assert chosen["probability"] == pytest.approx(chosen["probabilities"]["sports"], abs=1e-6)
    stars = httpx.post(f"{servers['stars']}/explain", json={"text": "superb and brilliant", "class": "1"}).json()
    assert stars["target"] == "1" and stars["label"] == "5"


def test_explain_multilabel_and_binary_classes(servers, predictors, tiny_predictor):
    text = "the senate vote and the goal match"
    tags = httpx.post(f"{servers['tags']}/explain", json={"text": text, "class": "tech"}).json()
    assert_same_explanation(tags, predictors["tags"].explain(text, label="tech").to_dict())
    assert tags["labels"] == ["politics", "sports"] and tags["target"] == "tech"
    # Binary models: the scored label by default (no target, as before), the other on request.
    spam = httpx.post(f"{servers['spam']}/explain", json={"text": "a free prize"}).json()
    assert list(spam) == SENTIMENT_KEYS and spam["label"] == "spam"
    ham = httpx.post(f"{servers['spam']}/explain", json={"text": "a free prize", "class": "ham"}).json()
    assert ham["target"] == "ham" and ham["probability"] == pytest.approx(1 - spam["probability"], abs=1e-5)
    sentiment = httpx.post(f"{servers['sentiment']}/explain", json={"text": "great fun"}).json()
    assert list(sentiment) == SENTIMENT_KEYS
    assert_same_explanation(sentiment, tiny_predictor.explain("great fun").to_dict())
    negative = httpx.post(f"{servers['sentiment']}/explain", json={"text": "great fun", "class": "negative"}).json()
    assert negative["target"] == "negative"


def test_an_integer_label_may_be_named_by_its_number(servers, predictors):
    by_number = httpx.post(f"{servers['stars']}/explain", json={"text": "a fine film", "class": 5})
    assert by_number.status_code == 200 and by_number.json()["target"] == "5"
    assert by_number.json() == httpx.post(f"{servers['stars']}/explain", json={"text": "a fine film", "class": "5"}).json()
    assert predictors["stars"].explain("a fine film", label=5).to_dict()["target"] == "5"


@pytest.mark.parametrize("kind, body, message", [
    ("topics", {"text": "x", "class": "sport"},
     "unknown class 'sport'; the model's labels are politics, sports, tech"),
    ("sentiment", {"text": "x", "class": "pos"}, "unknown class 'pos'; the model's labels are negative, positive"),
    ("stars", {"text": "x", "class": "6"}, "unknown class '6'; the model's labels are 1, 2, 3, 4, 5"),
    ("topics", {"text": "x", "class": 5}, "unknown class '5'; the model's labels are politics, sports, tech"),
    ("topics", {"text": "x", "class": True}, "class must be a string"),
    ("topics", {"text": "x", "klass": "sports"}, "unknown field klass"),
])
def test_unknown_classes_get_one_line_naming_the_labels(servers, kind, body, message):
    response = httpx.post(f"{servers[kind]}/explain", json=body)
    assert response.status_code == 422
    assert response.json() == {"error": message}


# ----------------------------------------------------------------------------- schema and docs


def test_schema_documents_every_label_space(servers):
    schema = httpx.get(f"{servers['sentiment']}/openapi.json").json()
    parts = schema["components"]["schemas"]
    prediction = parts["PredictionOut"]
    assert {"label", "probability", "empty", "probabilities", "labels"} <= set(prediction["properties"])
    assert set(prediction["required"]) == {"label", "probability", "empty"}
    assert "K classes only" in prediction["properties"]["probabilities"]["description"]
    assert "class" in parts["ExplainRequest"]["properties"] and "class" not in parts["ExplainRequest"].get("required", [])
    explanation = parts["ExplainResponse"]
    assert {"target", "probabilities", "labels"} <= set(explanation["properties"])
    assert not {"target", "probabilities", "labels"} & set(explanation["required"])
    model = parts["ModelResponse"]
    assert {"task", "labels", "ordered", "thresholds", "page"} <= set(model["properties"])
    assert "thresholds" not in model["required"]
    responses = schema["paths"]["/model"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ModelResponse"}
    # Without an API key, no security scheme is declared; the label names are not in the schema.
    assert "securitySchemes" not in schema["components"]
    topics = httpx.get(f"{servers['topics']}/openapi.json").text
    assert "politics" not in topics


def test_docs_are_served_from_this_server(servers):
    assert docs_assets() is not None, "fastapi-offline (the serve extra) is not installed"
    url = servers["topics"]
    page = httpx.get(f"{url}/docs")
    assert page.status_code == 200
    assert "/static/docs/swagger-ui-bundle.js" in page.text and "/static/docs/swagger-ui.css" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), page.text
    assert httpx.get(f"{url}/redoc").status_code == 404  # ReDoc loads its logo from the internet: not served
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        asset = httpx.get(f"{url}/static/docs/{name}")
        assert asset.status_code == 200 and len(asset.content) > 10_000


def test_with_an_api_key_the_docs_stay_open_and_declare_the_scheme(server_factory, predictors):
    url = server_factory(create_app(predictors["topics"], api_key=API_KEY))
    for path in ("/docs", "/openapi.json", "/static/docs/swagger-ui.css"):
        assert httpx.get(f"{url}{path}").status_code == 200, path
    schema = httpx.get(f"{url}/openapi.json").json()
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "the server's API key (--api-key-env, --api-key-file or RNNSENT_API_KEY)"}
    for path, method in (("/predict", "post"), ("/explain", "post"), ("/model", "get")):
        assert schema["paths"][path][method]["security"] == [{"apiKey": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert API_KEY not in httpx.get(f"{url}/openapi.json").text
    assert httpx.post(f"{url}/predict", json={"texts": ["vote"]}).status_code == 401
    assert httpx.get(f"{url}/model").status_code == 401
    keyed = httpx.post(f"{url}/explain", json={"text": "vote", "class": "tech"},
                       headers={"Authorization": f"Bearer {API_KEY}"})
    assert keyed.status_code == 200 and keyed.json()["target"] == "tech"


# ----------------------------------------------------------------------------- the page's wording


class VisibleText(HTMLParser):
    """The text a reader sees or hears: element text outside scripts, titles, placeholders, aria-labels."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("placeholder", "aria-label", "title", "alt") and value:
                self.parts.append(value)

    def handle_data(self, data):
        self.parts.append(data)


def visible_text(page: str) -> str:
    parser = VisibleText()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def test_the_page_speaks_of_reviews_for_sentiment_models_only(servers):
    sentiment = httpx.get(f"{servers['sentiment']}/").text
    assert "<title>rnnsent: review sentiment, word by word</title>" in sentiment
    assert 'placeholder="Type or paste a review, then press Analyse (or Ctrl+Enter)"' in sentiment
    assert "Movie review" in sentiment and 'class="example"' in sentiment and 'data-sentiment="true"' in sentiment
    for kind in KINDS:
        page = httpx.get(f"{servers[kind]}/").text
        info = httpx.get(f"{servers[kind]}/model").json()["page"]
        # The title names the labels once /model answers (it needs the key); until then it is generic.
        assert "<title>rnnsent: text classification, word by word</title>" in page
        assert not IMDB_WORDS.search(info["title"])
        assert f'placeholder="{info["placeholder"]}"' in page
        assert 'data-sentiment="false"' in page and 'class="example"' not in page
        assert "{{" not in page
        text = visible_text(page)
        assert not IMDB_WORDS.search(text), (kind, IMDB_WORDS.findall(text))
        assert "politics" not in page  # the page is open without a key: no label names in it
