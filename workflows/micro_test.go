package workflows

// MicroYAML is a model small enough for a step to take milliseconds on two cores; no test
// depends on how many (the ones that need a run mid-way hold it: see hold). Data: Go
// sources of the standard library. It lives in the package's own tests, not its external
// ones, so that both share it.
const MicroYAML = `
seed: 3
model:
  vocab_size: 256
  d_model: 48
  n_layers: 2
  n_heads: 4
  n_kv_heads: 2
  ffn_hidden: 128
  seq_len: 64
  nope_every: 2
  moe: {experts: 2, top_k: 1, shared_expert: true, every: 2, expert_hidden: 64, aux_loss: 0.01}
data:
  train: ${GOROOT}/src/strings/*.go
train:
  steps: 60
  global_batch: 8
  micro_batch: 4
  optim: {lr: 1.0e-2, weight_decay: 0.1, clip: 1.0}
  schedule: {warmup: 4, decay: cosine, min_lr_ratio: 0.1}
  checkpoint: {every: 30, keep: 2}
  eval: {every: 0, batches: 1}
`
