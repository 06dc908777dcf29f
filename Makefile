# herd's everyday commands. `make demo` runs the main job; `make test` runs what CI runs.
GO       ?= go
BIN      := bin/herd
# go-nvml's cgo headers use deprecated declarations; quiet them.
export CGO_CFLAGS := -Wno-deprecated-declarations
# The demo trains on the Go standard library's sources, present wherever Go is.
export GOROOT := $(shell $(GO) env GOROOT)

.PHONY: build test bench demo finetune fashion lint fuzz weed
build:
	$(GO) build -o $(BIN) ./cmd/herd

# The whole suite runs in a few minutes on 2 cores; the timeout only catches a hang. Then
# every fuzz target for a bounded time.
test: lint
	$(GO) test -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz

# SeaweedFS's weed, the S3-compatible server that the object-storage tests start on
# loopback (they skip without it), built from the Go module proxy into $(go env GOPATH)/bin;
# .ci/run runs the same script.
weed:
	tools/install-weed.sh

# Each Fuzz* function (one per parser a user feeds: config with --set, shard manifest,
# JSONL rows, checkpoint manifest, state and safetensors) runs for FUZZTIME beyond its
# seed corpus. New inputs are minimized for at most 100 runs, so that a target keeps
# exploring instead of minimizing. A crash fails the target and writes the input under
# the package's testdata/fuzz, to keep as a regression seed.
FUZZTIME ?= 15s
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for target in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== fuzz $$dir $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x $$dir; \
		done; \
	done

# gofmt, go vet, a vet of the no-assembly build (-tags purego) that other CPUs get, and
# Temporal's workflowcheck: nothing a workflow calls may depend on time, map order,
# goroutines or channels (it prints nothing when all is well). It runs at a pinned
# version through `go run`, so nothing needs installing; workflows/workflowcheck.yaml
# lists the functions it wrongly flags, each with why.
WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0
lint:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet ./...
	$(GO) vet -tags purego ./kernels/...
	$(GO) run $(WORKFLOWCHECK) -config workflows/workflowcheck.yaml ./workflows/...

# Go benchmarks (GFLOP/s, tokens/s, GB/s as custom metrics), then the side-by-side
# comparisons with numpy and PyTorch under bench/ when those are installed.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x -timeout 30m ./kernels/... ./trainer/... ./data/...
	@if /usr/bin/python3 -c 'import numpy, torch' 2>/dev/null; then \
		for s in bench/*.sh; do echo "== $$s"; "$$s" || exit 1; done; \
	else \
		echo "bench/: apt-get install python3-numpy python3-torch libopenblas0-pthread for the side-by-side comparisons"; \
	fi

# Packs Go's sources into Arrow shards (train and held-out eval split), then trains the tiny
# preset from them for a few minutes as a durable Temporal workflow (`herd run`: embedded
# server and worker in this process, state in runs/demo/state), then prints the final train
# loss and the eval loss and bits per byte of the last checkpoint. Each run starts afresh in
# runs/demo; the shards are packed once and verified (every sha256 and row) on later runs:
# `rm -rf shards/go*` to pack them again.
demo: build
	$(call pack_or_verify,shards/go,--text '$${GOROOT}/src/**/*.go#train' --seq-len 256)
	$(call pack_or_verify,shards/go-eval,--text '$${GOROOT}/src/**/*.go#eval' --seq-len 256)
	rm -rf runs/demo
	$(BIN) run examples/tiny.yaml --state-dir runs/demo/state --set train.checkpoint.dir=runs/demo
	$(BIN) eval runs/demo/tiny --data shards/go-eval

# Fine-tunes the demo's model (runs/demo/tiny; `make demo` first when it is not there) on
# chat data from the Go standard library, a doc comment answered by its signature, and
# prints the exact-match accuracy of herd generate --chat on held-out packages before and
# after, and the wall time (examples/gochat/finetune.sh; a few minutes on 2 cores).
finetune: build
	@test -e runs/demo/tiny || $(MAKE) --no-print-directory demo
	GO=$(GO) HERD=$(BIN) examples/gochat/finetune.sh

# Issue 4's multimodal check: packs Fashion-MNIST (Debian: apt-get install
# dataset-fashion-mnist) as 7x7-pixel patches, trains examples/fashion.yaml (about 7 CPU-minutes),
# then scores greedy captions on the 10,000 test images.
FASHION ?= /usr/share/datasets/fashion-mnist
fashion: build
	$(call pack_or_verify,shards/fashion7,--fashion-mnist $(FASHION) --split train --patch 7 --seq-len 40)
	$(call pack_or_verify,shards/fashion7-test,--fashion-mnist $(FASHION) --split test --patch 7 --seq-len 40)
	rm -rf runs/fashion
	ckpt=$$($(BIN) train examples/fashion.yaml --out runs/fashion | tee /dev/stderr | sed -n 's/^checkpoint //p') && \
		$(BIN) eval "$$ckpt" --data shards/fashion7-test --captions

# pack_or_verify DIR,PACK-FLAGS: pack into DIR unless its manifest exists (pack writes the
# manifest last, so an interrupted pack is packed again), else verify what is there.
pack_or_verify = if [ -e $(1)/manifest.json ]; then $(BIN) data verify $(1); else $(BIN) data pack $(2) --out $(1); fi
