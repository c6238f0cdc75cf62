"""Compiled hot-path kernels (Cython), each with a pure-Python twin.

Every concern is three files: ``_name.pyx`` (+ ``.pxd``/``.pyi``) compiled,
``_name_py.py`` the twin, ``name.py`` the selector the service imports.
"""
