"""Build hook for the optional native kernels (everything else is in pyproject.toml). Without a C compiler the
extension is skipped and the library takes its torch route (``neuroplastic.boltzmann.native``,
``neuroplastic.sal.native``)."""

import sys

from setuptools import Extension, setup

DL = ["dl"] if sys.platform.startswith("linux") else []  # the thread team finds torch's OpenMP runtime (_team.h)
TEAM = ["src/neuroplastic/_team.h", "src/neuroplastic/_stream.h"]  # headers both kernels include

setup(ext_modules=[Extension("neuroplastic.boltzmann._native", ["src/neuroplastic/boltzmann/_native.c"],
                             extra_compile_args=["-O3", "-fno-trapping-math", "-Wno-psabi"], libraries=DL, depends=TEAM, optional=True),
                   Extension("neuroplastic.sal._native", ["src/neuroplastic/sal/_native.c"],
                             extra_compile_args=["-O3", "-fno-trapping-math", "-Wno-psabi"], libraries=DL, depends=TEAM, optional=True)])
