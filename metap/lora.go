package metap

import "math"

// LoRAPlusRatio is λ of LoRA+ [LoRA+]: the learning rate of B, the adapter's
// up-projection, is λ times that of A. Hayou et al. show that with equal rates the
// feature learning of a wide adapter is inefficient (B learns too slowly) and recommend
// λ ≈ 2^4 for LLaMA-sized models, the value herd uses.
//
//	[LoRA]  Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", §4.1.
//	[LoRA+] Hayou, Ghosh and Yu 2024, "LoRA+: Efficient Low Rank Adaptation of Large
//	        Models", §3 and Table 1 (η_B = λ·η_A).
const LoRAPlusRatio = 16

// loraEntry sets an adapter's base values. A starts as PEFT's Kaiming-uniform
// (nn.init.kaiming_uniform_ with a = √5, bound 1/√in) would in variance, 1/(3·in), drawn
// from a normal as every herd matrix is; B starts at zero, so that the adapted model
// starts as the base model [LoRA]. A learns at the base LR η, B at λ·η [LoRA+]. Weight
// decay and eps are the base values; the adapter's own scale α/r is finetune.lora's, not a
// multiplier of the table (Mult stays 1).
func loraEntry(e *Entry) {
	switch e.Class {
	case LoRAA:
		e.InitStd = 1 / math.Sqrt(3*float64(e.Shape[len(e.Shape)-1]))
	case LoRAB:
		e.InitStd = 0
		e.LR *= LoRAPlusRatio
	}
}
