"""The compiled part of panopipe; everything else is declared in pyproject.toml.

The extension is optional: without a C compiler (or Python's headers) the build says so in one line and
panopipe installs with its pure-Python SQLite reader, which writes the same bytes more slowly.
"""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "panopipe.catalog.transfer._sqlite_copy",
            ["src/panopipe/catalog/transfer/_sqlite_copy.c"],
            libraries=["dl"] if sys.platform.startswith("linux") else [],
            extra_compile_args=["-O2", "-Wall"],
            optional=True,
        )
    ]
)
