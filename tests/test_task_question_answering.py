"""question-answering answers as transformers' QuestionAnsweringPipeline answers, on both engines.

transformers 5 (pinned) removed pipeline("question-answering"), so the peer is the last release that has it, 4.57.6,
installed apart from .venv (requirements/peer-transformers4.txt, into .cache/peer-transformers4 by the `peer`
fixture when it is not there) and run in a subprocess (tests/qa_peer.py) on the same tiny random source folders:
BERT (WordPiece), RoBERTa (byte-level BPE) and XLM-R (Unigram behind Metaspace), 64 tokens each, so the long
context is cut into many windows. The build-time port of that pipeline (bundle_builder/qa_reference.py, which makes
the golden examples on transformers 5) is compared with the same peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import RequestError
from support import ROOT, FakeContext, load_event, new_function

TASK = "question-answering"
KINDS = ("bert", "roberta", "xlm-roberta")
PEER_DIR = ROOT / ".cache" / "peer-transformers4"
PEER_PINS = ROOT / "requirements" / "peer-transformers4.txt"
PEER_SCRIPT = Path(__file__).with_name("qa_peer.py")
PEER_VERSION = "4.57.6"

SHORT = "Zoë met the café owner in Zürich. 東京 is the capital of Japan 🎌, and Paris is the capital of France 🇫🇷."
LONG = " ".join(
    [
        "Lambda functions load the model once when the container starts, then answer many requests.",
        "Paris is the capital of France; the Seine flows through it for 13 km.",
        "Crème brûlée, naïve façades and the Zürich café are in another story 🎉.",
        "東京は日本の首都です, and Kyoto was the capital before 1869.",
        "Émile's dog, Rex, sleeps from nine to five (roughly) every day!",
    ]
    * 3
)  # hundreds of tokens on the tiny tokenizers: many 64-token windows
WHERE = {"question": "Where?", "context": LONG}
CAPITAL = {"question": "What is the capital of France?", "context": LONG}
CASES: list[tuple[dict[str, str], dict[str, Any]]] = [
    ({"question": "What is the capital of France?", "context": SHORT}, {}),
    ({"question": "Who met the owner?", "context": SHORT}, {"top_k": 3, "align_to_words": False}),
    (CAPITAL, {}),
    (CAPITAL, {"top_k": 3}),
    (WHERE, {"top_k": 5, "align_to_words": False}),
    (WHERE, {"doc_stride": 8}),
    (WHERE, {"doc_stride": 0, "top_k": 2}),
    (CAPITAL, {"max_answer_len": 1, "top_k": 2}),
    (CAPITAL, {"max_answer_len": 30}),
    (WHERE, {"max_question_len": 1}),
    (CAPITAL, {"handle_impossible_answer": True}),
    (WHERE, {"handle_impossible_answer": True, "top_k": 4, "align_to_words": False}),
    (WHERE, {"max_seq_len": 40, "doc_stride": 10, "top_k": 2}),
]
LIST = [c[0] for c in CASES[:4]]
CASE_IDS = [f"{i}-{','.join(p) or 'defaults'}" for i, (_, p) in enumerate(CASES)]

STRIDE_TOO_LONG = (
    "parameter 'doc_stride' must be at most max_seq_len (40), got 41: windows overlap by fewer tokens than they hold"
)


REFUSALS = [  # on the roberta model
    (WHERE, {"max_seq_len": 40, "doc_stride": 41}, 422, STRIDE_TOO_LONG),
    (
        WHERE,
        {"doc_stride": 60},
        422,
        "parameter 'doc_stride' must be less than the 55 context tokens that windows of max_seq_len=64 leave "
        "beside this question (9 tokens with the special tokens), got 60; send a smaller doc_stride or a larger "
        "max_seq_len",
    ),
    (
        {"question": "What is the capital of France? " * 8, "context": LONG},
        {},
        413,
        "the question 'What is the capital of France? What is the capital of Fra...' takes 180 tokens with the "
        "special tokens, leaving no room for the context in windows of max_seq_len=64 tokens; shorten the "
        "question or send a larger max_seq_len (at most 64)",
    ),
]
REFUSAL_IDS = ["stride-over-window", "stride-over-context-room", "question-over-window"]


def _pins() -> list[str]:
    lines = (line.split("#")[0].strip() for line in PEER_PINS.read_text().splitlines())
    return [line for line in lines if line]


def install_peer() -> None:
    """transformers 4.57.6 into .cache/peer-transformers4 unless every pinned version is already there."""
    wanted = [pin.split("==") for pin in _pins()]
    present = all((PEER_DIR / f"{name.replace('-', '_')}-{version}.dist-info").is_dir() for name, version in wanted)
    if present:
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--upgrade",
            "--target",
            str(PEER_DIR),
            "-r",
            str(PEER_PINS),
        ],
        check=True,
    )


@pytest.fixture(scope="session")
def peer() -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """peer(cases) -> the 4.57 pipeline's {"output"} or {"error"} per {"model", "inputs", "parameters"} case."""
    install_peer()

    def run(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        env = {**os.environ, "PYTHONPATH": str(PEER_DIR), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, str(PEER_SCRIPT)],
            input=json.dumps(cases),
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        answer = json.loads(done.stdout)
        assert answer["version"] == PEER_VERSION  # 4.57, not .venv's transformers 5
        return answer["results"]

    return run


@pytest.fixture(scope="module")
def peer_answers(peer, tiny_model) -> dict[str, list[dict[str, Any]]]:
    """The pipeline's answers, computed once (one subprocess): each kind's to CASES, the roberta model's to LIST
    ("list") and to REFUSALS ("refused")."""
    roberta = str(tiny_model("roberta", TASK))
    groups = {
        **{kind: [(str(tiny_model(kind, TASK)), x, params) for x, params in CASES] for kind in KINDS},
        "list": [(roberta, LIST, {"top_k": 2})],
        "refused": [(roberta, x, params) for x, params, _, _ in REFUSALS],
    }
    results = iter(peer([{"model": m, "inputs": x, "parameters": p} for g in groups.values() for m, x, p in g]))
    return {name: [next(results) for _ in group] for name, group in groups.items()}


@pytest.fixture(scope="module")
def functions(tiny_bundle) -> Callable[[str, str], Any]:
    cache: dict[tuple[str, str], Any] = {}

    def get(kind: str, engine: str) -> Any:
        if (kind, engine) not in cache:
            cache[kind, engine] = new_function(tiny_bundle(kind, TASK, engine=engine), NUM_THREADS="1")
        return cache[kind, engine]

    return get


def ask(fn: Any, inputs: Any, parameters: dict[str, Any] | None = None) -> Any:
    return fn.handle({"inputs": inputs, "parameters": parameters or {}}, FakeContext())["outputs"]


def assert_same(expected: Any, actual: Any, where: str = "") -> None:
    """Equal answers: scores within 1e-4 (fp32), offsets and answer texts exact, the same shape (dict or list)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        assert expected.keys() == actual.keys(), where
        for k in expected:
            assert_same(expected[k], actual[k], f"{where}.{k}")
    elif isinstance(expected, list) and isinstance(actual, list):
        assert len(expected) == len(actual), f"{where}: {expected} != {actual}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same(e, a, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float) and actual == pytest.approx(expected, abs=1e-4), (
            f"{where}: {expected} != {actual}"
        )
    else:
        assert type(expected) is type(actual) and expected == actual, f"{where}: {expected!r} != {actual!r}"


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
@pytest.mark.parametrize("kind", KINDS)
def test_answers_equal_the_pipeline_for_every_parameter(kind: str, engine: str, functions, peer_answers) -> None:
    fn = functions(kind, engine)
    for (x, params), want, case_id in zip(CASES, peer_answers[kind], CASE_IDS):
        assert "output" in want, f"{case_id}: the pipeline failed: {want}"
        assert_same(want["output"], ask(fn, x, params), f"{kind}/{engine}/{case_id}")


@pytest.mark.parametrize("kind", KINDS)
def test_the_golden_port_equals_the_pipeline(kind: str, tiny_model, peer_answers) -> None:
    import transformers

    from bundle_builder.qa_reference import pipeline_tokenizer, question_answer

    folder = tiny_model(kind, TASK)
    tokenizer = pipeline_tokenizer(folder, transformers.AutoTokenizer.from_pretrained(str(folder)))
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(str(folder)).eval()
    for (x, params), want, case_id in zip(CASES, peer_answers[kind], CASE_IDS):
        got = json.loads(json.dumps(question_answer(model, tokenizer, **x, **params)))
        assert_same(want["output"], got, f"{kind}/{case_id}")


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_a_list_of_inputs_answers_each_as_the_pipeline_answers_the_list(engine: str, functions, peer_answers) -> None:
    want = peer_answers["list"][0]
    answer = functions("roberta", engine).handle({"inputs": LIST, "parameters": {"top_k": 2}}, FakeContext())
    assert_same(want["output"], answer["outputs"])
    assert "truncated_inputs" not in answer["timing"]  # long contexts are windowed, never cut


@pytest.mark.parametrize("case", range(len(REFUSALS)), ids=REFUSAL_IDS)
def test_what_the_pipeline_refuses_is_a_typed_error(case: int, functions, peer_answers) -> None:
    x, params, status, message = REFUSALS[case]
    want = peer_answers["refused"][case]
    assert "error" in want, want  # the pipeline raises (ValueError, or a panic of the tokenizer)
    fn = functions("roberta", "torch")
    with pytest.raises(RequestError) as info:
        ask(fn, x, params)
    assert (info.value.status, str(info.value)) == (status, message)
    assert ask(fn, CASES[0][0])  # the function keeps serving


@pytest.mark.parametrize(
    "inputs, params, message",
    [
        (CAPITAL, {"top_k": 0}, "parameter 'top_k' must be an integer between 1 and 100 (answers per question), got 0"),
        (
            CAPITAL,
            {"max_answer_len": 0},
            "parameter 'max_answer_len' must be an integer >= 1 (tokens in an answer), got 0",
        ),
        (
            CAPITAL,
            {"max_seq_len": 65},
            "parameter 'max_seq_len' must be an integer between 1 and 64 (tokens in a window, at most the model's max "
            "length), got 65",
        ),
        (
            CAPITAL,
            {"doc_stride": -1},
            "parameter 'doc_stride' must be an integer >= 0 (tokens of overlap between windows of a long context), got -1",
        ),
        (CAPITAL, {"align_to_words": "yes"}, "parameter 'align_to_words' must be true or false, got 'yes'"),
        (
            CAPITAL,
            {"truncate": True},
            "unknown parameter 'truncate' for question-answering; accepted parameters: align_to_words, doc_stride, "
            "handle_impossible_answer, max_answer_len, max_question_len, max_seq_len, top_k",
        ),
        (
            "a text",
            {},
            '"inputs"[0] must be {"question": str, "context": str} (a question-answering model), got str; '
            "several questions are a list of such objects",
        ),
        (
            {"question": "q", "text": "c"},
            {},
            '"inputs"[0] must be {"question": str, "context": str} (a question-answering model), got keys '
            "['question', 'text']; several questions are a list of such objects",
        ),
        (
            {"question": ["q1", "q2"], "context": "c"},
            {},
            '"inputs"[0] must be {"question": str, "context": str} (a question-answering model), got question as '
            "list; several questions are a list of such objects",
        ),
    ],
    ids=[
        "top-k-zero",
        "answer-len-zero",
        "seq-len-over-model",
        "negative-stride",
        "align-not-bool",
        "unknown",
        "plain-text",
        "wrong-key",
        "question-list",
    ],
)
def test_bad_requests_are_refused_naming_what_is_allowed(inputs: Any, params, message: str, functions) -> None:
    fn = functions("bert", "torch")
    with pytest.raises(RequestError) as info:
        ask(fn, inputs, params)
    assert str(info.value) == message
    assert ask(fn, CASES[0][0])


def test_the_sample_events_answer_200_as_the_pipeline(functions, peer, tiny_model) -> None:
    direct = load_event("tasks/question_answering_direct.json")
    http = load_event("tasks/question_answering_http.json")
    body = json.loads(__import__("base64").b64decode(http["body"]))
    folder = str(tiny_model("bert", TASK))
    want = peer(
        [
            {"model": folder, "inputs": direct["inputs"], "parameters": direct["parameters"]},
            {"model": folder, "inputs": body["inputs"], "parameters": body["parameters"]},
        ]
    )
    for engine in ("torch", "onnxruntime"):
        fn = functions("bert", engine)
        answer = fn.handle(direct, FakeContext())
        assert_same(want[0]["output"], answer["outputs"])
        response = fn.handle(http, FakeContext())
        assert response["statusCode"] == 200
        assert_same(want[1]["output"], json.loads(response["body"])["outputs"])


def test_the_manifest_says_how_the_pipeline_reads_the_tokenizer(tiny_bundle) -> None:
    from runtime.bundle import read_bundle

    manifest = read_bundle(tiny_bundle("roberta", TASK)).manifest
    assert manifest["task_config"] == {"question_first": True, "truncation_side": "right", "cls_token_id": 0}


def test_the_bundle_keeps_the_folder_s_tokenizer_json_as_4_57_reads_it(tiny_model, tiny_bundle) -> None:
    """transformers 5 rebuilds XLM-R's tokenizer from its class (WhitespaceSplit before Metaspace), which moves word
    offsets; 4.57, the pipeline's last release, reads tokenizer.json as it is, and so does the bundle."""
    from runtime.bundle import read_bundle

    bundled = json.loads(read_bundle(tiny_bundle("xlm-roberta", TASK)).read_file("tokenizer.json"))
    source = json.loads((tiny_model("xlm-roberta", TASK) / "tokenizer.json").read_bytes())
    parts = ("normalizer", "pre_tokenizer", "model", "post_processor", "decoder", "added_tokens")
    assert {k: bundled[k] for k in parts} == {k: source[k] for k in parts}
    assert source["normalizer"] is not None  # the NFKC that transformers 5's XLMRobertaTokenizer leaves out


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_the_golden_examples_replay_long_contexts_and_every_parameter(engine: str, functions) -> None:
    predictor = functions("xlm-roberta", engine).predictor
    golden = predictor.model.manifest.golden
    assert {k for ex in golden for k in ex.parameters} >= {"top_k", "doc_stride", "handle_impossible_answer"}
    assert max(len(ex.input["context"]) for ex in golden) > 500  # several windows of 64 tokens
    assert predictor.check_golden().ok


def test_half_precision_compares_the_ranked_scores_since_near_ties_may_flip(functions) -> None:
    task = functions("bert", "torch").predictor.task
    stored = [
        {"score": 0.5, "start": 0, "end": 5, "answer": "Paris"},
        {"score": 0.3, "start": 9, "end": 14, "answer": "Seine"},
    ]
    flipped = [{**stored[1], "score": 0.5004}, {**stored[0], "score": 0.3}]
    assert not task.compare([stored], [flipped], "float32").ok  # fp32: the answers themselves
    assert task.compare([stored], [flipped], "float16").ok
    assert task.compare([stored], [flipped], "float16").value == pytest.approx(4e-4)
    assert not task.compare([stored], [flipped[0]], "bfloat16").ok  # a different number of answers


def test_a_tokenizer_that_pads_left_puts_the_context_first_as_the_pipeline_does(tiny_model, peer, tmp_path) -> None:
    """padding_side "left": the pipeline sends (context, question), cuts the context with only_first, and lets every
    token (the question's too) be in the answer."""
    import shutil

    from bundle_builder.build import build_bundle

    folder = tmp_path / "left"
    shutil.copytree(tiny_model("bert", TASK), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    build_bundle(folder, tmp_path / "left.bundle", task=TASK, engine="torch")
    fn = new_function(tmp_path / "left.bundle", NUM_THREADS="1")
    assert fn.predictor.model.manifest.task_config["question_first"] is False
    wanted = peer([{"model": str(folder), "inputs": x, "parameters": params} for x, params in CASES])
    for (x, params), want, case_id in zip(CASES, wanted, CASE_IDS):
        assert_same(want["output"], ask(fn, x, params), case_id)


def test_the_deployment_budget_asks_long_contexts(tiny_model, tmp_path) -> None:
    """The CLI measures the budget by default: its maximal request is the golden question over a long context."""
    from bundle_builder.build import build_bundle
    from runtime.bundle import read_bundle

    build_bundle(tiny_model("bert", TASK), tmp_path / "b.bundle", task=TASK, engine="torch", budget=True)
    record = read_bundle(tmp_path / "b.bundle").manifest["budget"]
    assert record["measured"]["maximal_p50_ms"] > record["measured"]["typical_p50_ms"]


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("question_first", "yes", "manifest field 'task_config.question_first' must be true or false, got 'yes'"),
        ("truncation_side", "up", "manifest field 'task_config.truncation_side' must be 'right' or 'left', got 'up'"),
        ("cls_token_id", True, "manifest field 'task_config.cls_token_id' must be a token id or null, got True"),
    ],
)
def test_a_bundle_with_a_bad_task_config_is_refused_at_init(
    key: str, value: Any, message: str, tiny_bundle, tmp_path
) -> None:
    from runtime.errors import BundleCorruptError
    from support import rehash_header

    raw = tiny_bundle("bert", TASK).read_bytes()
    bad = tmp_path / "bad.bundle"
    bad.write_bytes(rehash_header(raw, lambda header: header["manifest"]["task_config"].update({key: value})))
    with pytest.raises(BundleCorruptError) as info:
        new_function(bad)
    assert str(info.value) == f"{bad}: {message}; rebuild the bundle with bundle_builder"
