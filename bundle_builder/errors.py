"""Errors of the builder.

BuildError            base: the bundle could not be built or proved
├── SourceError       the model folder is missing, incomplete, unsafe or of an architecture we cannot serve
└── VerifyError       a built bundle does not reproduce its golden examples
"""

from __future__ import annotations


class BuildError(Exception):
    pass


class SourceError(BuildError):
    pass


class VerifyError(BuildError):
    pass
