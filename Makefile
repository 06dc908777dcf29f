# herd's everyday commands. `make demo` runs the main job; `make test` runs what CI runs.
GO       ?= go
BIN      := bin/herd
# go-nvml's cgo headers use deprecated declarations; quiet them.
export CGO_CFLAGS := -Wno-deprecated-declarations
# The demo trains on the Go standard library's sources, present wherever Go is.
export GOROOT := $(shell $(GO) env GOROOT)

.PHONY: build test bench demo lint
build:
	$(GO) build -o $(BIN) ./cmd/herd

# The whole suite runs in a few minutes on 2 cores; the timeout only catches a hang.
test: lint
	$(GO) test -count=1 -timeout 15m ./...

# gofmt, go vet, and a vet of the no-assembly build (-tags purego) that other CPUs get.
lint:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet ./...
	$(GO) vet -tags purego ./kernels/...

# Go benchmarks (GFLOP/s, tokens/s, GB/s as custom metrics), then the side-by-side
# comparisons with numpy and PyTorch under bench/ when those are installed.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./kernels/... ./trainer/... ./data/...
	@if python3 -c 'import numpy, torch' 2>/dev/null; then \
		for s in bench/*.sh; do echo "== $$s"; "$$s" || exit 1; done; \
	else \
		echo "bench/: apt-get install python3-numpy python3-torch libopenblas0-pthread for the side-by-side comparisons"; \
	fi

# Trains the tiny preset on Go's sources for a few minutes, then prints the final train and
# eval loss and bits per byte. Each run starts afresh in runs/demo.
demo: build
	rm -rf runs/demo
	$(BIN) train examples/tiny.yaml --out runs/demo
