"""pip install ./python: the package, with the libwcodec.so built in ../build (or the one named
by WCODEC_LIBRARY) copied into it. Build the library first: cmake --build build."""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class with_library(build_py):
    def run(self):
        super().run()
        lib = os.environ.get("WCODEC_LIBRARY") or os.path.join(HERE, "..", "build", "libwcodec.so")
        if not os.path.exists(lib):
            raise SystemExit(f"wcodec: {lib} not found: build it first (cmake -S . -B build && "
                             "cmake --build build) or set WCODEC_LIBRARY")
        self.copy_file(lib, os.path.join(self.build_lib, "wcodec", "libwcodec.so"))


setup(cmdclass={"build_py": with_library})
