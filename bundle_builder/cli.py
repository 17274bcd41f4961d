"""`python -m bundle_builder {build,inspect,verify,requirements}`: translates arguments into library calls.

Errors print as `ErrorType: message` and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from bundle_builder.build import STORAGE_DTYPES
from bundle_builder.quantize import Floors
from bundle_builder.sources import TASK_ALIASES, TASK_AUTO_CLASS
from runtime.engines import ENGINES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bundle_builder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="pack a local model folder into one bundle file")
    build.add_argument("src", nargs="?", help="model folder (save_pretrained or sentence-transformers layout)")
    build.add_argument("--gguf", metavar="FILE", help="build from a GGUF file instead of a folder (dequantised)")
    build.add_argument(
        "--engine",
        choices=["auto", *ENGINES],
        default="auto",
        help="auto (default): build for torch and the task's ONNX engine, time each on the golden inputs, keep the "
        "faster; or force one",
    )
    build.add_argument("-o", "--out", required=True, help="bundle file to write")
    build.add_argument(
        "--task",
        choices=sorted([*TASK_AUTO_CLASS, *TASK_ALIASES]),
        help="default: inferred from config.json; text-ranking is text-classification for a one-score cross-encoder",
    )
    build.add_argument("--multi-label", action="store_true", help="text-classification with sigmoid scores per label")
    build.add_argument(
        "--dtype", choices=STORAGE_DTYPES, default="float32", help="weight storage dtype (CPU computes in fp32)"
    )
    build.add_argument("--max-length", type=int, help="token limit (default: the model's own)")
    build.add_argument("--name", help="model name recorded in the bundle (default: the folder name)")
    build.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8 weights on onnxruntime (encoders: the scheme chosen by measured fidelity) or onnxruntime-genai "
        "(causal LMs); measured against fp32, refused below the floors",
    )
    floors = Floors()
    build.add_argument("--min-cosine", type=float, default=floors.min_cosine, help="int8 embeddings: worst cosine")
    build.add_argument("--mean-cosine", type=float, default=floors.mean_cosine, help="int8 embeddings: mean cosine")
    build.add_argument("--min-top1", type=float, default=floors.top1_agreement, help="int8 classification: top-1 share")
    build.add_argument(
        "--min-token-top1",
        type=float,
        default=floors.token_top1,
        help="int8 generation: share of next tokens equal to fp32's, teacher-forced",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.add_argument(
        "--no-budget", action="store_true", help="skip measuring the deployment budget (memory, timeout, batch size)"
    )
    build.add_argument(
        "--no-golden",
        action="store_true",
        help="keep no golden examples in the bundle (they still prove the build): no init canary, and `inspect` says so",
    )
    inspect = sub.add_parser("inspect", help="show what a bundle holds")
    inspect.add_argument("bundle")
    inspect.add_argument("--json", action="store_true", help="one JSON object instead of text")
    verify = sub.add_parser("verify", help="check integrity and replay the golden examples")
    verify.add_argument("bundle")
    requirements = sub.add_parser(
        "requirements", help="print the runtime requirements file for the bundle's engine (what the image installs)"
    )
    requirements.add_argument("bundle")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            from bundle_builder.build import build_bundle

            result = build_bundle(
                args.src,
                args.out,
                gguf=args.gguf,
                engine=args.engine,
                task=args.task,
                multi_label=args.multi_label,
                dtype=args.dtype,
                max_length=args.max_length,
                name=args.name,
                quantize=args.quantize,
                floors=Floors(args.min_cosine, args.mean_cosine, args.min_top1, args.min_token_top1),
                budget=not args.no_budget,
                no_golden=args.no_golden,
                progress=not args.quiet,
            )
            if result.budget is not None:
                from bundle_builder.budget import describe

                print("\n".join(f"budget: {line}" for line in describe(result.budget)))
            if result.engine_choice is not None:
                print(f"engine: {result.engine_choice['chosen']} ({result.engine_choice['reason']})")
            print(
                f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, sha256 {result.sha256}); "
                f"verified {result.verify.examples} golden examples: {result.verify.describe()}"
                + ("; the bundle keeps none (--no-golden: no init canary)" if args.no_golden else "")
            )
            print(f"MODEL_BUNDLE_SHA256={result.sha256}")  # pin it in the function's configuration (README)
        elif args.command == "inspect":
            from bundle_builder.summary import render, summarize

            info = summarize(args.bundle)
            print(json.dumps(info, indent=2) if args.json else render(info))
        elif args.command == "requirements":
            from bundle_builder.summary import runtime_requirements

            print(runtime_requirements(args.bundle))
        else:
            from bundle_builder.verify import verify_bundle

            report = verify_bundle(args.bundle)
            print(f"OK {args.bundle}: sha256 {report.sha256}; {report.examples} golden examples, {report.describe()}")
    except Exception as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0
