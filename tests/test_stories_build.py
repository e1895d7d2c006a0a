"""The story pipeline runs compiled (setup.py, mypyc) and from its current sources."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

from monitor.stories import cluster, features, nearcopy, normalise

COMPILED = (cluster, features, nearcopy, normalise)


@pytest.mark.parametrize("module", COMPILED, ids=lambda m: m.__name__)
def test_compiled_module_is_built_from_the_current_source(module: ModuleType) -> None:
    """An editable install keeps loading its extension after the `.py` changes, so a
    stale build would silently test old code; `make install` rebuilds it. The code
    is in the shared library (setup.py's GROUP); each module's extension only loads it."""
    built = Path(str(module.__file__))
    if built.suffix == ".py":
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module.__name__} is not compiled: the mypyc build step did not run")
        pytest.skip("running interpreted (no mypyc build)")
    library = Path(str(importlib.import_module("monitor_stories__mypyc").__file__))
    source = built.with_name(module.__name__.rsplit(".", 1)[1] + ".py")
    assert library.stat().st_mtime >= source.stat().st_mtime, (
        f"{library.name} is older than {source.name}: rebuild with `make install` "
        "(or `pip install -e .`)")
