#!/usr/bin/env bash
# One trial of the MetaP transfer and ablation experiments (docs/metap.md, "Ablations"),
# printed as one CSV row: mode,width,log2_lr,seed,ablate,eval_loss,seconds,sets.
# The trial is examples/metap-transfer.yaml's: examples/asha-proxy.yaml at WIDTH (heads
# WIDTH/32, kv heads half of them, FFN 3·WIDTH), 200 steps (20 warmup, cosine) of batch
# 8 × 64 bytes, eval loss on 8 held-out batches, metap.base the width-64, depth-2 proxy
# with the same tokens, so only the width rules act.
#
# usage: bench/metap_trial.sh MODE WIDTH LOG2_LR SEED ABLATE [--set key=value]...
#   ABLATE: metap.ablate as a comma list (hidden_lr,eps), or - for none.
# HERD names the binary (default bin/herd). The run is trained at GOMAXPROCS=1 under
# nice 19 and removed afterwards. A sweep over the same values gives the same losses
# (training is deterministic); this avoids the embedded Temporal server per trial. Many
# trials, two at a time: xargs -P 2 -L 1 bench/metap_trial.sh < jobs > results.csv
set -euo pipefail
mode=$1 w=$2 l=$3 seed=$4 abl=$5
shift 5
root=$(cd "$(dirname "$0")/.." && pwd)
herd=${HERD:-$root/bin/herd}
export GOROOT=${GOROOT:-$(go env GOROOT)}
heads=$((w / 32)) kv=$((w / 64))
((kv >= 1)) || kv=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
sets=(--set name=trial --set model.d_model="$w" --set model.n_heads="$heads" --set model.n_kv_heads="$kv"
	--set model.ffn_hidden=$((w * 3)) --set train.steps=200 --set train.schedule.warmup=20
	--set train.checkpoint.every=0 --set train.eval.every=0 --set metap.base.d_model=64
	--set metap.base.n_layers=2 --set metap.base.batch_tokens=512 --set metap.base.train_tokens=102400
	--set metap.mode="$mode" --set train.optim.lr="$(python3 -c "print(2.0**($l))")" --set seed="$seed")
[[ $abl == - ]] || sets+=(--set "metap.ablate=[$abl]")
start=$SECONDS
loss=$(GOMAXPROCS=1 nice -n 19 "$herd" train "$root/examples/asha-proxy.yaml" "${sets[@]}" "$@" --out "$out" --json 2>/dev/null |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["eval_loss"])')
extra=$(printf '%s;' "$@" | sed 's/--set;//g; s/;$//')
echo "$mode,$w,$l,$seed,$abl,$loss,$((SECONDS - start)),$extra"
