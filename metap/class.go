// Package metap turns hyperparameters tuned on a small base model into per-tensor init
// scales, learning rates, weight decay, Adam eps and forward multipliers for any target
// shape, so that they transfer across width, depth, batch size and training tokens.
// It imports nothing of the trainer: the trainer describes its tensors with a Class and a
// shape, and initialises and optimises from the table metap returns.
package metap

// Class is the role of a tensor, which decides how its hyperparameters scale.
type Class string

const (
	Embedding Class = "embedding" // token embedding table [vocab, d_model]: input-like
	Patch     Class = "patch"     // image patch projection [d_model, pixels]: input-like
	Hidden    Class = "hidden"    // matrices with both fans growing with width (q/k/v/o, FFN)
	Expert    Class = "expert"    // routed and shared expert matrices: hidden-like
	Router    Class = "router"    // MoE router [experts, d_model]: output-like, fan-out = experts
	Readout   Class = "readout"   // LM head [vocab, d_model]: output-like
	Gain      Class = "gain"      // RMSNorm gains [d_model]: vector-like
	LoRAA     Class = "lora_a"    // LoRA down-projection A [rank, in] of an adapted matrix (finetune.lora)
	LoRAB     Class = "lora_b"    // LoRA up-projection B [out, rank], zero at init
)
