"""The built wheel works where it is installed: beside other packages, not in a checkout."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import alembic
from tests.helpers import ROOT, write_config


def test_installed_wheel_finds_its_own_migrations_and_rules(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(tmp_path / "dist"), str(ROOT)], check=True)
    [wheel] = (tmp_path / "dist").glob("storywatch-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # As in site-packages: the Alembic library sits beside the package.
    shutil.copytree(Path(alembic.__file__).parent, site / "alembic")
    env = {**os.environ, "PYTHONPATH": str(site)}
    found = subprocess.run(
        [sys.executable, "-c", "from monitor import resources as r; "
         "print(r.__file__, r.migrations_dir(), r.shipped_rules_dir(), sep='\\n')"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert found == [str(site / "monitor" / "resources.py"), str(site / "monitor" / "migrations"),
                     str(site / "monitor" / "shipped_rules")]
    config = write_config(tmp_path, {"state_dir": str(tmp_path)})
    subprocess.run([sys.executable, "-m", "monitor", "-c", str(config), "db", "upgrade"],
                   env=env, cwd=tmp_path, check=True, capture_output=True)
    with sqlite3.connect(tmp_path / "storywatch.db") as db:
        assert db.execute("SELECT count(*) FROM feeds").fetchone() == (0,)
