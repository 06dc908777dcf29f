#!/bin/sh
# make finetune: fine-tunes the demo's byte-level model (make demo: runs/demo/tiny, trained
# on Go sources) to answer a Go doc comment with the signature it documents, and prints
# the exact-match accuracy of `herd generate --chat` on held-out packages before and after,
# and the wall time. Each leg is one `herd train` of examples/gochat/finetune.yaml from the
# same model with its own --set keys, scored the same way: full fine-tuning, then LoRA
# (rank 16 on every attention, dense and shared-expert matrix; the base frozen) at a third
# of full fine-tuning's peak LR, since LoRA+ gives B 16 times A's LR (docs/metap.md): on this
# model LoRA's final train loss was 0.79 at lr 1e-3, 1.11 at 3e-3 and 2.37 at 6e-3.
set -eu
HERD=${HERD:-bin/herd}
GO=${GO:-go}
TEMPLATE=examples/gochat/tokenizer_config.json
EVAL=shards/gochat/eval.jsonl
OUT=runs/finetune
start=$(date +%s)

# The chat data (seconds to make): train.jsonl from most packages, eval.jsonl from the
# held-out ones (tools/gochat), the training conversations packed with the template.
$GO run ./tools/gochat -out shards/gochat
rm -rf shards/gochat-train "$OUT"
$HERD data pack --quiet --chat shards/gochat/train.jsonl --chat-template "$TEMPLATE" --on-long drop --out shards/gochat-train
mkdir -p "$OUT"

# score NAME MODEL: answers the held-out conversations greedily (one JSON line each in
# $OUT/NAME.jsonl, the summary last) and prints "K/N (P%)", the exact matches, and how
# many replies name the documented function (func NAME( or func NAME[ in both).
score() {
	$HERD generate "$2" --chat "$EVAL" --chat-template "$TEMPLATE" --max-tokens 64 --json >"$OUT/$1.jsonl"
	tail -n 1 "$OUT/$1.jsonl" | sed -n 's/.*"expected":\([0-9]*\),"exact_match":\([0-9]*\).*/\2 \1/p' |
		awk '{ printf "%d/%d (%.1f%%)", $1, $2, 100 * $1 / $2 }'
	sed -n 's/.*"text":"func \([A-Za-z0-9_]*\)[[(].*"want":"func \([A-Za-z0-9_]*\)[[(].*/\1 \2/p' "$OUT/$1.jsonl" |
		awk -v n="$(($(wc -l <"$OUT/$1.jsonl") - 1))" '$1 == $2 { k++ } END { printf ", right function name %d/%d", k, n }'
}

# leg NAME [--set K=V]...: fine-tunes the demo's model into $OUT/NAME and scores it.
leg() {
	name=$1
	shift
	$HERD train examples/gochat/finetune.yaml --out "$OUT" --set name="$name" "$@" >&2
	echo "$name: exact match $(score "$name" "$OUT/$name") on the held-out packages"
}

echo "before (runs/demo/tiny): exact match $(score before runs/demo/tiny) on the held-out packages" | tee "$OUT/summary.txt"
leg full | tee -a "$OUT/summary.txt"
leg lora --set finetune.lora.rank=16 --set finetune.lora.alpha=32 --set train.optim.lr=1e-3 \
	--set 'finetune.lora.targets=[layers.*.attn.*, layers.*.ffn.*, layers.*.moe.shared.*]' | tee -a "$OUT/summary.txt"
echo "wall time $(($(date +%s) - start)) s" | tee -a "$OUT/summary.txt"
