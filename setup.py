"""Build step: the story pipeline's hot modules compiled to C extensions with mypyc.

The compiled modules are built from the same `.py` files (one source of truth);
see docs/install.md. Everything else is installed as plain Python.
"""

from mypyc.build import mypycify
from setuptools import setup

COMPILED = [
    "monitor/stories/cluster.py",
    "monitor/stories/features.py",
    "monitor/stories/nearcopy.py",
    "monitor/stories/normalise.py",
]

GROUP = "monitor_stories"
"""The compiled code lives in one shared library, `monitor_stories__mypyc`; each module's
own extension only loads it."""

setup(ext_modules=mypycify(["--ignore-missing-imports", *COMPILED], opt_level="3",
                           group_name=GROUP))
