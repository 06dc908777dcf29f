"""Runs docs/model.md's PyTorch reference forward, in float64, on the weights and batch
that TestMatchesPyTorch dumps, and prints testdata/pytorch.json. See reference_test.go."""
import json
import os
import re
import sys

import torch

doc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../docs/model.md")
exec(re.search(r"```python\n(.*?)```", open(doc).read(), re.S).group(1))

d = json.load(open(sys.argv[1]))
b = d["batch"]
B, T = b["B"], b["T"]
W = {k: torch.tensor(v["data"], dtype=torch.float64).view(*v["shape"]) for k, v in d["weights"].items()}
ints = lambda k: torch.tensor(b[k], dtype=torch.int64).view(B, T)
# Pixels and the mask are float32 in the batch: widen the float32 values, not the decimals.
f32 = lambda k: torch.tensor(b[k], dtype=torch.float32).to(torch.float64)
P = len(b["Patches"]) // len(b["PatchAt"])
loss, aux, logits = forward(d["cfg"], W, d["mult"], d["attn_scale"], ints("Tokens"), ints("Targets"),
                            f32("Mask").view(B, T), ints("Pos"), ints("Doc"), f32("Patches").view(-1, P),
                            torch.tensor(b["PatchAt"], dtype=torch.int64))
rows = list(range(0, B * T, 10))
json.dump({"Loss": loss.item(), "Aux": float(aux), "Rows": rows, "Logits": logits[rows].tolist()},
          sys.stdout, indent=1)
print()
