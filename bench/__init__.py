"""Before/after benchmark: the naive `pipeline(...)` handler, this project's handler, and ONNX Runtime, side by side.

Run `python -m bench --bundle build/model.bundle` (or `make bench`). Every engine is measured in its own fresh
subprocess, so each RSS is its own; the orchestrator (this package's `suite`) never imports torch.

    __main__.py       CLI: arguments -> suite.run -> report (prints one table of ratios against the goals)
    suite.py          the phases, in order: ONNX export, cold starts, latency per engine, SQS batches
    worker.py         subprocess entry (`python -m bench.worker SPEC RESULT`): one engine, one mode
    engines.py        the three engines behind one `embed(text) -> list[float]` call
    naive_handler.py  the baseline as commonly written: a module-level transformers.pipeline
    export.py         torch.onnx.export of the source model, cached under build/bench-cache/
    measure.py        latency summaries, RSS sampling, child processes
    report.py         goals table, bench.json, latency CDF plot, machine description
    generation.py     (separate tool) text-generation speed vs model.generate: `python -m bench.generation`
"""
