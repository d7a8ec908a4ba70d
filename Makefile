# Gatehouse — `make demo`, `make test`, `make build`, `make bench`.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: build deps test unit e2e demo bench check-layers clean

build:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

deps:
	scripts/install-deps.sh

check-layers:
	python3 scripts/check_layers.py
	python3 scripts/check_coroutines.py

unit: build
	$(BUILD)/unit_tests

e2e: build
	/usr/bin/python3 -m pytest -q tests/e2e $(PYTEST_ARGS)

test: check-layers build
	$(BUILD)/unit_tests --gtest_brief=1
	/usr/bin/python3 -m pytest -q tests/e2e $(PYTEST_ARGS)

demo:
	scripts/install-deps.sh
	$(MAKE) build
	scripts/demo.sh $(DEMO_ARGS)

bench: build
	/usr/bin/python3 bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
