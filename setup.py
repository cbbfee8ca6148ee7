"""Build hook for the optional native kernels (everything else is in pyproject.toml). Without a C compiler the
extension is skipped and the library takes its torch route (``neuroplastic.boltzmann.native``,
``neuroplastic.sal.native``)."""

import sys

from setuptools import Extension, setup

DL = ["dl"] if sys.platform.startswith("linux") else []  # the thread team finds torch's OpenMP runtime (_team.h)
# both kernels: the headers they include; -fno-trapping-math lets comparisons of floats become vector selects
COMMON = {"extra_compile_args": ["-O3", "-fno-trapping-math", "-Wno-psabi"], "libraries": DL, "optional": True,
          "depends": ["src/neuroplastic/_team.h", "src/neuroplastic/_stream.h"]}

setup(ext_modules=[Extension("neuroplastic.boltzmann._native", ["src/neuroplastic/boltzmann/_native.c"], **COMMON),
                   Extension("neuroplastic.sal._native", ["src/neuroplastic/sal/_native.c"], **COMMON)])
