// Package generate continues a prompt with a model: greedy decoding or sampling with
// temperature, top-k and top-p (nucleus), one token at a time through the model's KV cache
// (model.Decoder), so that each new token costs one position's forward pass.
//
// Sampling is deterministic for a seed: the random stream is PCG seeded by (seed, 0), one
// draw per sampled token, and the probabilities are computed in float64 in a fixed order.
package generate

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/model"
)

// Options are the knobs of one generation, named as the flags of `herd generate`.
type Options struct {
	MaxTokens   int     // tokens to generate at most (> 0)
	Temperature float64 // logits are divided by it before sampling; 0 = greedy (argmax)
	TopK        int     // sample among the k most likely tokens only; 0 = all
	TopP        float64 // then among the fewest most likely whose probabilities sum to >= p; 1 = all
	Seed        uint64  // the sampling stream's seed
	Stop        []int32 // tokens that end generation (the one generated is kept in the output): EOS, end of turn
}

// Validate reports a bad option as a user error naming its flag.
func (o Options) Validate() error {
	switch {
	case o.MaxTokens < 1:
		return usererr.New("--max-tokens", "must be at least 1; got %d", o.MaxTokens)
	case !(o.Temperature >= 0) || math.IsInf(o.Temperature, 1):
		return usererr.New("--temperature", "must be 0 (greedy) or positive; got %g", o.Temperature)
	case o.TopK < 0:
		return usererr.New("--top-k", "must be 0 (all tokens) or positive; got %d", o.TopK)
	case !(o.TopP > 0 && o.TopP <= 1):
		return usererr.New("--top-p", "must be in (0, 1]; got %g", o.TopP)
	}
	return nil
}

// Why generation stopped.
const (
	StopEnd       = "end"        // the model produced one of Options.Stop
	StopMaxTokens = "max_tokens" // Options.MaxTokens tokens were generated
	StopSeqLen    = "seq_len"    // the sequence filled the model's seq_len
)

// Run feeds prompt (at least one token, at most d.Cap()) to a fresh sequence of d and
// generates until a stop condition; emit, if not nil, gets each new token as soon as it is
// chosen. It returns the generated tokens and why it stopped. o must be valid.
func Run(d *model.Decoder[float32], prompt []int32, o Options, emit func(int32)) (ids []int32, stop string) {
	d.Reset()
	var logits []float32
	for _, t := range prompt {
		logits = d.Step(t)
	}
	s := sampler{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0))}
	for {
		next := s.next(logits)
		ids = append(ids, next)
		if emit != nil {
			emit(next)
		}
		switch {
		case slices.Contains(o.Stop, next):
			return ids, StopEnd
		case len(ids) == o.MaxTokens:
			return ids, StopMaxTokens
		case d.Len() == d.Cap():
			return ids, StopSeqLen
		}
		logits = d.Step(next)
	}
}

// sampler picks the next token from logits, with scratch reused across tokens.
type sampler struct {
	o     Options
	rng   *rand.Rand
	order []int32   // token ids, most likely first
	p     []float64 // their probabilities, in that order
}

// next is the argmax when the temperature is 0; else it keeps the top-k tokens by logit
// (ties to the lower id, so top-k 1 is the argmax), turns their logits/temperature into
// probabilities (softmax in float64, max subtracted), keeps the fewest whose sum reaches
// top-p, and draws one with probability proportional to what is kept.
func (s *sampler) next(logits []float32) int32 {
	if s.o.Temperature == 0 {
		return model.Argmax(logits)
	}
	s.order = s.order[:0]
	for i := range logits {
		s.order = append(s.order, int32(i))
	}
	slices.SortStableFunc(s.order, func(a, b int32) int {
		switch {
		case logits[a] > logits[b]:
			return -1
		case logits[a] < logits[b]:
			return 1
		}
		return 0
	})
	if k := s.o.TopK; k > 0 && k < len(s.order) {
		s.order = s.order[:k]
	}
	s.p = s.p[:0]
	top, sum := float64(logits[s.order[0]]), 0.0
	for _, id := range s.order {
		e := math.Exp((float64(logits[id]) - top) / s.o.Temperature)
		s.p = append(s.p, e)
		sum += e
	}
	keep, cum := len(s.p), 0.0
	for i, e := range s.p {
		cum += e / sum
		if cum >= s.o.TopP {
			keep = i + 1
			break
		}
	}
	mass := 0.0
	for _, e := range s.p[:keep] {
		mass += e
	}
	u := s.rng.Float64() * mass
	for i, e := range s.p[:keep] {
		if u < e {
			return s.order[i]
		}
		u -= e
	}
	return s.order[keep-1] // u fell past the last one by rounding
}
