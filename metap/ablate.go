package metap

import (
	"fmt"
	"slices"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// Ablations are the rules `metap.ablate` can switch back to sp's values, one name per rule,
// so that each rule's effect on the loss can be measured by itself (docs/metap.md,
// "Ablations"). An ablated rule gives the base value where the rule would scale it:
//
//	hidden_init   hidden and expert matrices start at σ, not σ/√m
//	hidden_lr     hidden and expert matrices learn at η, not η/m (depth, batch and horizon
//	              factors still apply)
//	readout_mult  the LM head's forward multiplier is its base value (metap.readout_mult),
//	              not that over m (init σ and LR η as before)
//	router_mult   the MoE router's forward multiplier is 1, not 1/m
//	attn_scale    attention logits use the model's 1/√d_head, not μP's √d₀/d_head
//	weight_decay  matrices decay with λ, not λ·m (metap only)
//	eps           every tensor keeps ε, not ε/m nor the depth factor (metap only)
//	depth         every depth rule off: branch multipliers 1, block LR and eps without
//	              (L/L₀) factors, as if the proxy had the target's depth (metap only)
//	batch_lr      LR without √(B/B₀) (metap only)
//	horizon_lr    LR without (D/D₀)^-γ (metap only)
//
// The embedding and patch projection have no width rule to ablate (their multiplier,
// metap.input_mult, is a base value in every mode); the readout's init σ is sp's already.
var Ablations = []string{"hidden_init", "hidden_lr", "readout_mult", "router_mult", "attn_scale",
	"weight_decay", "eps", "depth", "batch_lr", "horizon_lr"}

// mupAblations are the ones mup's rules have; the others are rules of metap alone.
var mupAblations = Ablations[:5]

// ablated is the set of rules a config switches off.
type ablated map[string]bool

func newAblated(names []string) ablated {
	a := ablated{}
	for _, n := range names {
		a[n] = true
	}
	return a
}

// validateAblate checks metap.ablate: known names, each once, and only rules the mode has
// (sp has none; an ablation the mode lacks would silently change nothing).
func validateAblate(mode string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if mode == "sp" {
		return usererr.New("metap.ablate", "mode sp has no rules to ablate; use mode mup or metap, or remove metap.ablate")
	}
	for i, n := range names {
		key := fmt.Sprintf("metap.ablate[%d]", i)
		switch {
		case !slices.Contains(Ablations, n):
			return usererr.New(key, "unknown rule %q; allowed: %s", n, strings.Join(Ablations, ", "))
		case slices.Index(names, n) != i:
			return usererr.New(key, "%q is listed twice", n)
		case mode == "mup" && !slices.Contains(mupAblations, n):
			return usererr.New(key, "%q is a rule of mode metap, not of mup; allowed under mup: %s", n, strings.Join(mupAblations, ", "))
		}
	}
	return nil
}
