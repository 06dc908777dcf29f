package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/checkpoint"
	"github.com/herdml/herd/trainer/model"
)

// Read loads the Hugging Face model in dir: its herd model config and every tensor by its
// herd name, in model.NewLayout order and herd's layouts (see mapping). Weights may be
// F32, BF16 or F16, single-file or sharded; a tied LM head is copied from the embedding
// (herd's head is untied); a Llama4ForConditionalGeneration's vision tower and projector
// are skipped. A missing shard or file, and a tensor missing, extra or of the wrong shape,
// is a user error naming it.
func Read(dir string) (model.Config, []checkpoint.Tensor, error) {
	s, err := readSource(dir)
	if err != nil {
		return s.cfg, nil, err
	}
	lay := model.NewLayout(s.cfg)
	flat := make([]float32, lay.Total)
	out := make([]checkpoint.Tensor, len(lay.Tensors))
	byHerd := map[string][]float32{}
	for i, t := range lay.Tensors {
		out[i] = checkpoint.Tensor{Name: t.Name, Shape: t.Shape, Data: flat[t.Offset : t.Offset+t.Size()]}
		byHerd[t.Name] = out[i].Data
	}
	maps := mappings(s)
	want := map[string]checkpoint.Tensor{} // Hugging Face name -> destination, in HF layout
	for _, m := range maps {
		dst := checkpoint.Tensor{Name: m.hf, Shape: m.shape}
		if m.layout == same {
			dst.Data = byHerd[m.herd[0]]
		} else {
			dst.Data = make([]float32, size(m.shape)) // converted into herd's below
		}
		want[m.hf] = dst
	}
	files, err := shards(dir, want, s.skip)
	if err != nil {
		return s.cfg, nil, err
	}
	for _, f := range files {
		if err := readFile(filepath.Join(dir, f.name), f.tensors, s.skip); err != nil {
			return s.cfg, nil, err
		}
	}
	for _, m := range maps {
		herd := make([][]float32, len(m.herd))
		for i, n := range m.herd {
			herd[i] = byHerd[n]
		}
		m.convert(s.cfg, herd, want[m.hf].Data, false)
	}
	if s.tied {
		copy(byHerd["output.weight"], byHerd["tok_embeddings.weight"])
	}
	return s.cfg, out, nil
}

// skip reports whether a tensor of the folder is not part of its text model: the vision
// tower and projector of a Llama4ForConditionalGeneration.
func (s source) skip(name string) bool {
	return s.prefix != "" && (strings.HasPrefix(name, "vision_model.") || strings.HasPrefix(name, "multi_modal_projector."))
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

type shard struct {
	name    string
	tensors []checkpoint.Tensor
}

// shards assigns each expected tensor to the file holding it: model.safetensors, or the
// shards model.safetensors.index.json lists, in the order of their names. Tensors skip
// reports are not looked for.
func shards(dir string, want map[string]checkpoint.Tensor, skip func(string) bool) ([]shard, error) {
	all := make([]checkpoint.Tensor, 0, len(want))
	for _, t := range want {
		all = append(all, t)
	}
	sort.Slice(all, func(a, b int) bool { return all[a].Name < all[b].Name })
	where := filepath.Join(dir, IndexFile)
	js, err := os.ReadFile(where)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dir, WeightFile)); err != nil {
			return nil, usererr.New(filepath.Join(dir, WeightFile), "no weights: want %s or %s with its shards", WeightFile, IndexFile)
		}
		return []shard{{WeightFile, all}}, nil
	}
	if err != nil {
		return nil, usererr.New(where, "cannot read: %v", unwrapPath(err))
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(js, &idx); err != nil {
		return nil, usererr.New(where, "not a safetensors index: %v", err)
	}
	byFile := map[string][]checkpoint.Tensor{}
	for name, file := range idx.WeightMap {
		if skip(name) {
			continue
		}
		if _, ok := want[name]; !ok {
			return nil, usererr.New(where, "unexpected tensor %s: not part of a model with this config", name)
		}
		if file != filepath.Base(file) || file == "." || file == ".." {
			return nil, usererr.New(where, "tensor %s: shard %q must be a file name in the model folder", name, file)
		}
		byFile[file] = append(byFile[file], want[name])
	}
	for _, t := range all {
		if _, ok := idx.WeightMap[t.Name]; !ok {
			return nil, usererr.New(where, "tensor %s missing from weight_map", t.Name)
		}
	}
	var out []shard
	for file, ts := range byFile {
		if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
			return nil, usererr.New(filepath.Join(dir, file), "missing shard (listed in %s): %v", IndexFile, unwrapPath(err))
		}
		sort.Slice(ts, func(a, b int) bool { return ts[a].Name < ts[b].Name })
		out = append(out, shard{file, ts})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out, nil
}

// readFile reads one safetensors file, which must hold exactly tensors, and any that skip
// reports.
func readFile(path string, tensors []checkpoint.Tensor, skip func(string) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return usererr.New(path, "cannot read: %v", unwrapPath(err))
	}
	defer f.Close()
	if _, err := checkpoint.ReadSafetensorsSkipping(f, tensors, skip); err != nil {
		return usererr.New(path, "%v", err)
	}
	return nil
}

// A mapping is one Hugging Face tensor and the herd tensors its values are, in layout.
type mapping struct {
	hf     string
	shape  []int // Hugging Face's
	herd   []string
	layout layout
}

// layout says how a Hugging Face tensor's values are arranged relative to herd's.
type layout int

const (
	same     layout = iota // identical
	ropeRows               // a Llama's q or k projection: rows permuted per head (permute)
	down                   // experts' down_proj [E, G, C]: herd's w2 [E, C, G] transposed per expert
	gateUp                 // experts' gate_up_proj [E, C, 2G]: herd's w1, w3 [E, G, C] transposed, side by side
)

// mappings lists every tensor of s's model: for a Llama, LlamaForCausalLM's names; for
// Llama 4, Llama4ForCausalLM's (under s.prefix). Without s.tied, lm_head.weight too.
func mappings(s source) []mapping {
	cfg := s.cfg
	C, D, V := cfg.DModel, cfg.HeadDim(), cfg.VocabSize
	H, K, F := cfg.NHeads, cfg.NKVHeads, cfg.FFNHidden
	E, G := cfg.MoE.Experts, cfg.MoE.ExpertHidden
	var out []mapping
	add := func(hf string, shape []int, l layout, herd ...string) {
		out = append(out, mapping{s.prefix + hf, shape, herd, l})
	}
	add("model.embed_tokens.weight", []int{V, C}, same, "tok_embeddings.weight")
	qk := ropeRows
	if s.llama4 {
		qk = same // Llama 4 rotates interleaved pairs (2j, 2j+1), as herd does
	}
	for i := range cfg.NLayers {
		p, h := fmt.Sprintf("model.layers.%d.", i), fmt.Sprintf("layers.%d.", i)
		add(p+"input_layernorm.weight", []int{C}, same, h+"attn_norm.weight")
		add(p+"self_attn.q_proj.weight", []int{H * D, C}, qk, h+"attn.wq")
		add(p+"self_attn.k_proj.weight", []int{K * D, C}, qk, h+"attn.wk")
		add(p+"self_attn.v_proj.weight", []int{K * D, C}, same, h+"attn.wv")
		add(p+"self_attn.o_proj.weight", []int{C, H * D}, same, h+"attn.wo")
		add(p+"post_attention_layernorm.weight", []int{C}, same, h+"ffn_norm.weight")
		ff := "mlp."
		if s.llama4 {
			ff = "feed_forward."
		}
		if !cfg.IsMoE(i) {
			add(p+ff+"gate_proj.weight", []int{F, C}, same, h+"ffn.w1")
			add(p+ff+"up_proj.weight", []int{F, C}, same, h+"ffn.w3")
			add(p+ff+"down_proj.weight", []int{C, F}, same, h+"ffn.w2")
			continue
		}
		add(p+ff+"router.weight", []int{E, C}, same, h+"moe.router")
		add(p+ff+"experts.gate_up_proj", []int{E, C, 2 * G}, gateUp, h+"moe.experts.w1", h+"moe.experts.w3")
		add(p+ff+"experts.down_proj", []int{E, G, C}, down, h+"moe.experts.w2")
		add(p+ff+"shared_expert.gate_proj.weight", []int{G, C}, same, h+"moe.shared.w1")
		add(p+ff+"shared_expert.up_proj.weight", []int{G, C}, same, h+"moe.shared.w3")
		add(p+ff+"shared_expert.down_proj.weight", []int{C, G}, same, h+"moe.shared.w2")
	}
	add("model.norm.weight", []int{C}, same, "norm.weight")
	if !s.tied {
		add("lm_head.weight", []int{V, C}, same, "output.weight")
	}
	return out
}

// convert moves m's values between herd's tensors and hf, Hugging Face's, in the
// direction toHF says. Tensors of layout same share memory and are left alone.
func (m mapping) convert(cfg model.Config, herd [][]float32, hf []float32, toHF bool) {
	C, E, G := cfg.DModel, cfg.MoE.Experts, cfg.MoE.ExpertHidden
	switch m.layout {
	case same:
		if toHF {
			copy(hf, herd[0])
		}
	case ropeRows:
		permute(herd[0], hf, cfg.HeadDim(), C, toHF)
	case gateUp: // herd w1[e][g][c] = hf[e][c][g], w3[e][g][c] = hf[e][c][G+g]
		moveExperts(herd[0], hf, E, G, C, 2*G, 0, toHF)
		moveExperts(herd[1], hf, E, G, C, 2*G, G, toHF)
	case down: // herd w2[e][c][g] = hf[e][g][c]
		moveExperts(herd[0], hf, E, C, G, C, 0, toHF)
	}
}

// moveExperts copies between herd [E, rows, cols] and a Hugging Face tensor that holds
// herd's element (e, r, c) at hf[(e·cols + c)·stride + off + r]: each expert's matrix
// transposed, its rows a slice [off, off+rows) of hf's stride-wide rows.
func moveExperts(herd, hf []float32, E, rows, cols, stride, off int, toHF bool) {
	for e := range E {
		for r := range rows {
			for c := range cols {
				i, j := (e*rows+r)*cols+c, (e*cols+c)*stride+off+r
				if toHF {
					hf[j] = herd[i]
				} else {
					herd[i] = hf[j]
				}
			}
		}
	}
}

// permute reorders the rows of a Llama's q or k projection ([heads·D, C]) between the two
// RoPE layouts. Hugging Face's rotate_half pairs feature j of a head with feature j+D/2;
// herd (as Meta's reference code) pairs 2j with 2j+1, both rotating pair j by the same
// angle. So herd row 2j is HF row j and herd row 2j+1 is HF row j+D/2, per head; toHF
// inverts it. This is the permutation transformers' convert_llama_weights_to_hf applies
// to Meta's checkpoints. Llama 4's transformers code rotates interleaved pairs, as herd
// does, and needs none.
func permute(herd, hf []float32, D, C int, toHF bool) {
	rows := len(herd) / C
	for h := 0; h < rows/D; h++ {
		for j := range D / 2 {
			for k, src := range [2]int{j, j + D/2} {
				hr, fr := (h*D+2*j+k)*C, (h*D+src)*C
				if toHF {
					copy(hf[fr:fr+C], herd[hr:hr+C])
				} else {
					copy(herd[hr:hr+C], hf[fr:fr+C])
				}
			}
		}
	}
}
