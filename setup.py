"""Build the compiled pricing engine (``pricing._cengine``); everything else is in
pyproject.toml. ``pip install -e .`` builds it in place, next to ``pricing/engine.py``."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("pricing._cengine", ["pricing/_cengine.pyx"], extra_compile_args=["-O2"])],
        compiler_directives={"language_level": 3},
    )
)
