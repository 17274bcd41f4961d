"""Build-time CLI: pack a local Hugging Face model folder into one offline, pickle-free, hash-checked bundle.

Never imported by the runtime. Entry point: `python -m bundle_builder {build,inspect,verify}`.
"""
