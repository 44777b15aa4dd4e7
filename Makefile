# Two commands do everything (see README.md):
#   make book   create the venv, install, prepare the local data, execute every
#               chapter (quick profile) and build the HTML book into _build/html
#   make test   create the venv if missing, run the unit tests, re-run every
#               chapter against its stored outputs (nbval), build the book with -W,
#               read every page in Chromium, rehearse the full profile on CPU
#   make rehearsal   that rehearsal alone
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROFILE ?= quick
# Chapters executed at a time by `make book` (pneumo book run --jobs): two share a 2-core
# machine well, since much of a chapter is single-threaded Python between TensorFlow steps.
BOOK_JOBS ?= 2

# Everything the library writes (generated data, cached models) stays in the checkout.
export PNEUMO_HOME ?= $(CURDIR)/.pneumo
export TF_CPP_MIN_LOG_LEVEL := 3
# The stored book never contradicts its text: a false prose.claim stops the chapter
# (a reader's own run shows a note instead; pneumo_lib/prose.py).
export PNEUMO_CLAIMS := strict
export PYTHONHASHSEED := 0
# Kernels are looked up here first, so notebooks run on the venv's Python even
# when the user has another "python3" kernel installed.
export JUPYTER_PATH := $(abspath $(VENV))/share/jupyter

.PHONY: book test unit notebooks rehearsal pages html reader install clean browser sandbox

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python 3.10+ needed, found " + sys.version' 
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[book,test,app]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (pneumo)" >/dev/null
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/pneumo data prepare --profile $(PROFILE)
	$(BIN)/pneumo book run --profile $(PROFILE) --jobs $(BOOK_JOBS) --report _build/chapter-times.txt
	$(BIN)/jupyter-book build . --quiet
	@echo
	@cat _build/chapter-times.txt
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The chapters' nbval run and the full-profile rehearsal run side by side (each holds the
# other's output until it ends): both are mostly single-threaded Python between short
# TensorFlow steps, so on 2 cores the pair takes far less than one after the other. Their
# caches under PNEUMO_HOME are written whole and renamed (paths.partial_path), and the
# phantom they share is generated under a lock, so neither sees the other's half-written file.
# The built book's checks (`pages`: html, then reader) take the first core either frees: they
# read only the outputs stored in book/, never what the two runs write.
test: $(STAMP) browser sandbox unit
	$(MAKE) --no-print-directory --output-sync=target -j2 notebooks rehearsal pages

pages: $(STAMP) browser
	$(MAKE) --no-print-directory -j1 html
	$(MAKE) --no-print-directory -j1 reader

# The web app's browser test (tests/test_app_browser.py) drives Debian's Chromium. It is
# installed here when missing and we are root with apt-get (as in CI); otherwise the test
# is skipped and says why.
browser:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's chromium for the browser test ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "note: /usr/bin/chromium not found and not root: the app's browser test will be skipped (apt-get install chromium)"; \
	fi

# The grader runs each submission in Debian's bubblewrap sandbox (tests/test_assignments_sandbox.py).
# It is installed here when missing and we are root with apt-get (as in CI); otherwise those
# tests are skipped and say why.
sandbox:
	@if command -v bwrap >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's bubblewrap for the grader's sandbox ..."; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	else \
	  echo "note: bwrap not found and not root: the grader's sandbox tests will be skipped (apt-get install bubblewrap)"; \
	fi

# tests/test_book_pages.py runs in `reader`, on the book `html` built (alone, it builds its own).
# The tests run in one process per core (pytest-xdist), at most 4: each imports TensorFlow
# (about 2 GB at peak). On CI's 2 cores that took 15 minutes instead of 20.
# The 25 slowest tests are listed at the end: where CI's time goes.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ "$$n" -gt 4 ] && n=4; echo $$n)
unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/test_book_pages.py -n $(TEST_WORKERS) --durations=25

# Cells tagged nbval-check-output are compared exactly, cells tagged nbval-approx within the
# tolerance in their metadata (pneumo_lib/nbval_tolerance.py).
notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --sanitize-with book/nbval_sanitize.cfg -p pneumo_lib.nbval_tolerance -p no:cacheprovider book

# A rehearsal of the full profile on CPU (pneumo_lib/rehearsal.py): every chapter with the full
# profile's code paths (Kaggle data source, ImageNet backbones, two-phase fine-tuning) and small
# sizes and counts, on $$PNEUMO_DATA/kaggle if downloaded, else a Kaggle-shaped stand-in; real
# Xception weights, stand-ins for the other backbones. Executed chapters go to _build/rehearsal;
# book/ is not touched. Claims are not strict there: the table counts the unsupported ones.
# In make test it runs beside `notebooks`; the phantom data they both need (chapter 05 runs on
# it) is generated once, by whichever asks first.
# A chapter that fails makes the target fail (after every chapter has run). The Colab T4
# estimate's CPU measurement (about 5 minutes) is left to the benchmark:
# PNEUMO_HOME=.pneumo .venv/bin/python benchmarks/colab_estimate.py _build/rehearsal/rehearsal-trainings.json
rehearsal: $(STAMP)
	$(BIN)/pneumo book run --profile full --rehearse --no-t4-estimate --out _build/rehearsal --report _build/rehearsal/chapter-times.txt
	@echo
	@cat _build/rehearsal/chapter-times.txt

html: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going --quiet

# A reader's check of the built book: every page in headless Chromium at 1280x900 (clipped
# tables and code, missing figures, raw LaTeX or roles, error outputs, requests off the site).
reader: $(STAMP) browser
	PNEUMO_BOOK_HTML=_build/html $(BIN)/python -m pytest tests/test_book_pages.py

clean:
	rm -rf _build .pneumo
