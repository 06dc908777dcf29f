package model

import (
	"math"
	"testing"
)

// ActStats reports what the forward pass produced: the embedding rows it looked up, branch
// outputs that vanish when their multiplier is 0 and scale with it otherwise, logits that
// scale with the head's multiplier.
func TestActStatsFollowTheForward(t *testing.T) {
	cfg := testConfig()
	cfg.Vision = Vision{} // the embedding check below reads token rows only
	b := testBatch(cfg, 2, 7)
	m := newTestModel[float64](cfg, 2)
	m.Forward(b)
	s0 := m.ActStats()
	if len(s0.Attention) != cfg.NLayers || len(s0.FFN) != cfg.NLayers || len(s0.Residual) != cfg.NLayers {
		t.Fatalf("stats for %d/%d/%d layers, want %d", len(s0.Attention), len(s0.FFN), len(s0.Residual), cfg.NLayers)
	}
	emb, _ := m.Layout.Lookup("tok_embeddings.weight")
	want := 0.0
	for _, id := range b.Tokens {
		for c := range cfg.DModel {
			want += math.Abs(m.Params.Host()[emb.Offset+int(id)*cfg.DModel+c] * m.Mult[0])
		}
	}
	want /= float64(len(b.Tokens) * cfg.DModel)
	if math.Abs(s0.Embedding-want) > 1e-12*want {
		t.Errorf("embedding %g, want %g", s0.Embedding, want)
	}

	// Doubling the head's multiplier doubles every logit, exactly, and nothing else.
	iout := indexOf(m.Layout, "output.weight")
	m.Mult[iout] *= 2
	m.Forward(b)
	s1 := m.ActStats()
	if s1.Logits != 2*s0.Logits || s1.Embedding != s0.Embedding || s1.Residual[2] != s0.Residual[2] {
		t.Errorf("logits %g -> %g, want doubled; embedding %g -> %g and last stream %g -> %g, want unchanged",
			s0.Logits, s1.Logits, s0.Embedding, s1.Embedding, s0.Residual[2], s1.Residual[2])
	}
	// A branch whose output multiplier is 0 adds nothing; the next one still does.
	m.Mult[indexOf(m.Layout, "layers.0.attn.wo")] = 0
	m.Forward(b)
	s2 := m.ActStats()
	if s2.Attention[0] != 0 || s2.FFN[0] == 0 || s2.Attention[1] == 0 {
		t.Errorf("with layer 0's wo multiplier 0: attention %g (want 0), ffn %g, layer 1 attention %g (want nonzero)",
			s2.Attention[0], s2.FFN[0], s2.Attention[1])
	}
}

func indexOf(l *Layout, name string) int {
	for i, t := range l.Tensors {
		if t.Name == name {
			return i
		}
	}
	panic("no tensor " + name)
}
