# Thin wrapper over Meson (README commands).  build/ is the optimised build
# (make run, make bench); build-test/ has ASan+UBSan (make test).
PORT ?= 8000
PY := /usr/bin/python3
SANITIZE := address,undefined
SRCS_STAMP = $(shell sh scripts/srclist.sh src; sh scripts/srclist.sh tests/unit; ls bench/*.c src/store/migrations/*/*.sql src/web/* 2>/dev/null)

.PHONY: all run test unit e2e bench clean deps build build-test

all: build

deps:
	@bash scripts/deps.sh

# Re-run meson when the list of sources changed (meson does not glob).
define setup
	@mkdir -p $(1)
	@echo "$(SRCS_STAMP)" > $(1).srclist.new
	@if [ ! -f $(1)/build.ninja ]; then meson setup $(1) $(2) >/dev/null; \
	 elif ! cmp -s $(1).srclist.new $(1).srclist; then meson setup --reconfigure $(1) $(2) >/dev/null; fi
	@mv $(1).srclist.new $(1).srclist
endef

build: deps
	$(call setup,build,--buildtype=release -Db_ndebug=false)
	@ninja -C build

build-test: deps
	$(call setup,build-test,--buildtype=debug -Db_sanitize=$(SANITIZE) -Db_lundef=false)
	@ninja -C build-test

run: build
	./build/agentd --port $(PORT) --dev-login

unit: build-test
	bash scripts/run_unit.sh build-test

e2e: build-test
	AGENTD_BIN=$(CURDIR)/build-test/agentd ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(PY) -m pytest -q tests/e2e

test: unit e2e

bench: build
	bash bench/run.sh

clean:
	rm -rf build build-test build.srclist build-test.srclist
