# herd's everyday commands. `make demo` runs the main job; `make test` runs what CI runs.
GO       ?= go
BIN      := bin/herd
# go-nvml's cgo headers use deprecated declarations; quiet them.
export CGO_CFLAGS := -Wno-deprecated-declarations

.PHONY: build test bench demo lint
build:
	$(GO) build -o $(BIN) ./cmd/herd

test: lint
	$(GO) test -count=1 -timeout 20m ./...

lint:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./kernels/... ./trainer/...

demo: build
	$(BIN) train examples/tiny.yaml
