"""fill-mask answers as transformers' FillMaskPipeline on the same folder.

Tiny random masked LMs (bert: WordPiece, roberta: byte-level BPE, xlm-roberta: Unigram), redrawn so that their
scores differ (tests/pipeline_peers.py), each built for both engines; every answer is compared with
transformers.pipeline("fill-mask") on the source folder: tokens, token_str and sequence exact, scores within 1e-4.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from pipeline_peers import PipelinePeers, answer_event, ask, cli_budget
from support import load_event, modules_after, new_function

from runtime.errors import BundleCorruptError, RequestError
from runtime.settings import Settings, SettingsError

TASK = "fill-mask"
KINDS = ["bert", "roberta", "xlm-roberta"]
ENGINES = ["torch", "onnxruntime"]
M = "<M>"  # stands for the model's mask token in the cases below
LONG_TAIL = " and the support team never answered my question" * 12  # over 64 tokens


@pytest.fixture(scope="module")
def models(tiny_model, tmp_path_factory) -> PipelinePeers:
    return PipelinePeers(TASK, tiny_model, tmp_path_factory)


def masked(peer: Any, inputs: Any) -> Any:
    """The inputs with M replaced by the peer's mask token."""
    mask = peer.tokenizer.mask_token
    return inputs.replace(M, mask) if isinstance(inputs, str) else [x.replace(M, mask) for x in inputs]


def assert_same(got: Any, want: Any) -> None:
    """Equal answers: token, token_str and sequence exact, in the same order; scores within 1e-4 (fp32)."""
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
        return
    assert {k: got[k] for k in ("token", "token_str", "sequence")} == {
        k: want[k] for k in ("token", "token_str", "sequence")
    }
    assert set(got) == set(want) and got["score"] == pytest.approx(want["score"], abs=1e-4)


CASES = {
    "default": (f"the capital of france is {M}.", {}),
    "top-k-1": (f"the capital of france is {M}.", {"top_k": 1}),
    "top-k-40": (f"lambda functions load the {M} once", {"top_k": 40}),
    "mask-first": (f"{M} lasts all day", {"top_k": 3}),
    "targets": (f"the capital of france is {M}.", {"targets": ["paris", "zzzq", "Paris", "day", "battery"]}),
    "target-string": (f"the capital of france is {M}.", {"targets": "day"}),
    "targets-under-top-k": (f"the capital of france is {M}.", {"targets": ["day", "the"], "top_k": 10}),
    "targets-all-alike": (f"the capital of france is {M}.", {"targets": ["Paris", "PARIS", "paris"]}),
    "two-masks": (f"the {M} of france is {M}.", {"top_k": 3}),
    "three-masks-targets": (f"{M} battery {M} all {M}", {"targets": ["day", "the", "lasts"], "top_k": 2}),
    "accents-cjk-emoji": (f"Café crème {M} à Paris, naïve — 東京タワー 🙂🚀", {}),
    "list": ([f"the capital of france is {M}.", f"{M} {M}", f"once upon a {M}, café 🙂"], {"top_k": 2}),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_answers_as_the_pipeline(models, kind: str, engine: str, case: str) -> None:
    inputs, parameters = CASES[case]
    inputs = masked(models.peer(kind), inputs)
    got = ask(models.function(kind, engine), inputs, parameters)["outputs"]
    want = models.peer(kind)(inputs, **parameters)
    if isinstance(inputs, list) and len(inputs) == 1:  # the pipeline unwraps a list of one; the function does not
        want = [want]
    assert_same(got, want)


def test_the_scores_tell_the_tokens_apart(models) -> None:
    # gaps over the score tolerance: else any order of the top tokens would pass
    for kind in KINDS:
        scores = [a["score"] for a in models.peer(kind)(masked(models.peer(kind), f"the capital of france is {M}."))]
        assert min(a - b for a, b in itertools.pairwise(scores)) > 1e-4, (kind, scores)


@pytest.mark.parametrize("kind", KINDS)
def test_the_pad_token_in_a_text_is_left_out_of_the_sequence_as_the_pipeline_does(models, kind: str) -> None:
    text = masked(models.peer(kind), f"{models.peer(kind).tokenizer.pad_token} the capital of france is {M}.")
    assert_same(ask(models.function(kind), text, {"top_k": 2})["outputs"], models.peer(kind)(text, top_k=2))


@pytest.mark.parametrize("kind", KINDS)
def test_long_inputs_are_cut_and_reported(models, kind: str) -> None:
    # the pipeline does not cut by default (the model then fails past its positions): compare with it cutting
    texts = masked(models.peer(kind), [f"the capital of {M} is paris", f"the {M} lasts all day" + LONG_TAIL])
    for engine in ENGINES:
        answer = ask(models.function(kind, engine), texts)
        assert answer["timing"]["truncated_inputs"] == [1]
        assert_same(answer["outputs"], models.peer(kind)(texts, tokenizer_kwargs={"truncation": True}))


def test_targets_outside_the_vocabulary_warn_as_the_pipeline_does(models, capsys) -> None:
    tokenizer = models.peer("bert").tokenizer
    first = tokenizer("zzzq", add_special_tokens=False)["input_ids"][0]
    ask(models.function("bert"), masked(models.peer("bert"), f"a {M}"), {"targets": ["zzzq", "day"]})
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    warnings = [line["message"] for line in logged if line["level"] == "WARNING"]
    assert warnings == [
        "The specified target token `zzzq` does not exist in the model vocabulary. "
        f"Replacing with `{tokenizer.convert_ids_to_tokens(first)}`."
    ]


def test_logits_are_read_at_the_masks_a_few_rows_at_a_time(models, monkeypatch) -> None:
    import runtime.tasks.fill_mask as fill_mask

    fn = new_function(models.bundle("roberta"), NUM_THREADS="1")
    task = fn.predictor.task
    texts = masked(
        models.peer("roberta"), [f"the {M} of france is {M}.", f"a {M}", "the capital of france is" + f" {M}" * 3]
    )
    batch = task.preprocess(texts, {})
    assert task.forward(batch, {}).shape == (6, task.vocab_size)  # (masks, V), not (B, T, V)
    monkeypatch.setattr(fill_mask, "LOGITS_BYTES", 1)  # one row per engine call
    calls = []
    run = task.engine.run
    monkeypatch.setattr(task.engine, "run", lambda arrays: calls.append(len(arrays["input_ids"])) or run(arrays))
    assert_same(ask(fn, texts)["outputs"], models.peer("roberta")(texts))
    assert calls == [1, 1, 1]


ERRORS = [
    ("no-mask", "no mask here", {}, 422, "has no mask token: put"),
    ("too-many-masks", " ".join([M] * 9), {}, 422, "has 9 mask tokens"),
    ("empty-targets", f"a {M}", {"targets": []}, 422, "at least one target token must be given"),
    ("empty-target", f"a {M}", {"targets": ""}, 422, "at least one target token must be given"),
    ("target-not-text", f"a {M}", {"targets": [1]}, 422, "parameter 'targets' must be a string or a list of strings"),
    ("top-k-0", f"a {M}", {"top_k": 0}, 422, "parameter 'top_k' must be an integer between 1 and"),
    ("top-k-over-vocab", f"a {M}", {"top_k": 10**6}, 422, "(the model's vocabulary)"),
    ("unknown", f"a {M}", {"candidate_labels": ["x"]}, 422, "unknown parameter 'candidate_labels' for fill-mask"),
    ("mask-cut-off", "the" + LONG_TAIL + f" {M}", {}, 413, "past the model's max length of 64 tokens"),
    ("truncate-false", f"the {M}" + LONG_TAIL, {"truncate": False}, 413, "the limit is 64"),
    ("chat", [{"role": "user", "content": "hi"}], {}, 400, "chat-style inputs"),
]


@pytest.mark.parametrize(
    ("inputs", "parameters", "status", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_bad_requests_are_typed_errors_and_the_function_keeps_serving(
    models, inputs: Any, parameters: dict[str, Any], status: int, message: str
) -> None:
    fn = models.function("bert")
    with pytest.raises(RequestError) as info:
        ask(fn, masked(models.peer("bert"), inputs) if isinstance(inputs, str) else inputs, parameters)
    assert (info.value.status, message in str(info.value)) == (status, True), str(info.value)
    good = masked(models.peer("bert"), f"the capital of france is {M}.")
    assert_same(ask(fn, good)["outputs"], models.peer("bert")(good))


@pytest.mark.parametrize("kind", KINDS)
def test_an_input_without_the_mask_token_is_a_422_naming_it(models, kind: str) -> None:
    mask = models.peer(kind).tokenizer.mask_token
    with pytest.raises(RequestError) as info:
        ask(models.function(kind), [f"the capital of france is {mask}.", "no mask here"])
    assert (info.value.status, info.value.error_type, str(info.value)) == (
        422,
        "UnprocessableInputError",
        f'"inputs"[1] has no mask token: put {mask} where the model should fill in a token, as in '
        f'"Paris is the {mask} of France."',
    )
    with pytest.raises(Exception, match="No mask_token"):
        models.peer(kind)("no mask here")


def test_max_mask_tokens_is_a_checked_setting(models) -> None:
    assert Settings.from_env({"MODEL_BUNDLE": "m"}).max_mask_tokens == 8
    for bad in ("0", "513", "x"):
        with pytest.raises(SettingsError, match="MAX_MASK_TOKENS"):
            Settings.from_env({"MODEL_BUNDLE": "m", "MAX_MASK_TOKENS": bad})
    fn = new_function(models.bundle("bert"), NUM_THREADS="1", MAX_MASK_TOKENS="1")
    two = masked(models.peer("bert"), f"the {M} of {M}")
    with pytest.raises(RequestError) as info:
        ask(fn, two)
    assert (info.value.status, str(info.value)) == (
        422,
        '"inputs"[0] has 2 mask tokens [MASK]; the limit is 1 (MAX_MASK_TOKENS)',
    )


@pytest.mark.parametrize(
    "task_config",
    [{}, {"mask_token": "[MASK]"}, {"mask_token": "[MASK]", "mask_token_id": 0}],
    ids=["empty", "no-id", "wrong-id"],
)
def test_a_bundle_without_its_mask_token_does_not_start(models, tmp_path, task_config: dict[str, Any]) -> None:
    bad = models.with_task_config("bert", task_config, tmp_path / "bad.bundle")
    with pytest.raises(BundleCorruptError, match=r"manifest field 'task_config(.mask_token_id)?' (must name|is not)"):
        new_function(bad, NUM_THREADS="1", CANARY="false")


@pytest.mark.parametrize("event", ["fill_mask_direct.json", "fill_mask_http.json"])
def test_the_sample_events_answer_as_the_pipeline(models, event: str) -> None:
    payload = load_event(f"tasks/{event}")  # its mask is <mask>: RoBERTa's
    body, outputs = answer_event(models.function("roberta"), payload)
    assert_same(outputs, models.peer("roberta")(body["inputs"], **body["parameters"]))


def test_the_onnxruntime_path_never_imports_torch_or_transformers(models) -> None:
    modules = modules_after(models.bundle("roberta", "onnxruntime"), {"inputs": "the capital of france is <mask>."})
    assert "onnxruntime" in modules and not modules & {"torch", "transformers", "bundle_builder"}


def test_the_golden_comparison_lets_near_ties_swap_and_nothing_else() -> None:
    from runtime.tasks.fill_mask import top_tokens_diff

    def entry(token: int, score: float, text: str = "") -> dict[str, Any]:
        return {"score": score, "token": token, "token_str": text or f"t{token}", "sequence": f"a t{token}"}

    golden = [entry(1, 0.5), entry(2, 0.3), entry(3, 0.29995)]
    cases = {
        "same": (golden, 0.0),
        "near-tie-swapped": ([entry(1, 0.5), entry(3, 0.30001), entry(2, 0.29999)], 6e-5),
        "edge-token-out": ([entry(1, 0.5), entry(2, 0.3), entry(4, 0.2999)], 5e-5),
        "far-token-out": ([entry(1, 0.5), entry(2, 0.3), entry(4, 0.1)], 0.19995),
        "other-text": ([entry(1, 0.5), entry(2, 0.3, "x"), entry(3, 0.29995)], float("inf")),
        "shorter": ([entry(1, 0.5), entry(2, 0.3)], float("inf")),
    }
    for name, (answer, drift) in cases.items():
        check = top_tokens_diff([golden, [golden, golden]], [answer, [golden, answer]], "float32")
        assert (check.value == pytest.approx(drift, abs=1e-9), check.ok) == (True, drift <= 1e-4), name


def test_the_cli_builds_it_and_measures_a_maximal_request_of_max_mask_tokens(models, tmp_path) -> None:
    measured = cli_budget(models.source("xlm-roberta"), TASK, tmp_path / "cli.bundle")["measured"]
    assert measured["maximal_request"] == "32 inputs of 64 tokens"
    assert 0 < measured["typical_p50_ms"] < measured["maximal_p50_ms"]


def test_a_tokenizer_that_cleans_up_spaces_decodes_as_the_pipeline(models, tmp_path) -> None:
    # bert-base-uncased and many WordPiece models decode with clean_up_tokenization_spaces: "paris , x" -> "paris, x"
    # (the tiny vocabulary has "," but not "." or "'")
    import shutil

    import transformers

    from bundle_builder.build import build_bundle

    folder = tmp_path / "cleans-up"
    shutil.copytree(models.source("bert"), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    build_bundle(folder, tmp_path / "b.bundle", task=TASK)
    peer = transformers.pipeline(TASK, model=str(folder), tokenizer=str(folder), device="cpu")
    texts = ["the capital , of france is [MASK] . isn ' t it ?", "[MASK] , day , [MASK] ! all ' ve gone"]
    assert peer.tokenizer.clean_up_tokenization_spaces
    fn = new_function(tmp_path / "b.bundle", NUM_THREADS="1")
    got, want = ask(fn, texts, {"top_k": 3})["outputs"], peer(texts, top_k=3)
    assert_same(got, want)
    assert all(" ," not in a["sequence"] and "," in a["sequence"] for a in want[0])  # the clean-up did apply
