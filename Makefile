# The two commands: `make demo` (offline demo on SQLite) and `make test`.
# Both create .venv and install Storywatch into it on first use, and again when
# the sources setup.py compiles with mypyc change (an editable install keeps
# loading the old extension modules otherwise).
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
COMPILED := $(addprefix monitor/stories/,cluster.py features.py nearcopy.py normalise.py)

$(STAMP): pyproject.toml setup.py $(COMPILED)
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,postgres]'
	touch $(STAMP)

.PHONY: install demo test lint
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/storywatch demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check monitor tests alembic bench
	$(VENV)/bin/mypy
