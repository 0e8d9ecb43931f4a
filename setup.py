"""The compiled part of panopipe; everything else is declared in pyproject.toml."""

import sys

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "panopipe.catalog.transfer._sqlite_copy",
            ["src/panopipe/catalog/transfer/_sqlite_copy.c"],
            libraries=["dl"] if sys.platform.startswith("linux") else [],
            extra_compile_args=["-O2", "-Wall"],
        )
    ]
)
