"""Builds the Cython hot path. All metadata lives in pyproject.toml.

``EDGE_NO_EXTENSIONS=1`` skips compilation: every module then runs its
pure-Python twin (see hotpath/_select.py).
"""

import os

from setuptools import Extension, setup

MODULES = ["_sse", "_chunk", "_http", "_tokens", "_sketch", "_route"]


def extensions() -> list[Extension]:
    if os.environ.get("EDGE_NO_EXTENSIONS") == "1":
        return []
    from Cython.Build import cythonize

    exts = [
        Extension(
            f"hotpath.{name}",
            [f"hotpath/{name}.pyx"],
            include_dirs=["hotpath"],
            extra_compile_args=["-O3"],
        )
        for name in MODULES
    ]
    return cythonize(exts, language_level=3, quiet=True)


setup(ext_modules=extensions())
