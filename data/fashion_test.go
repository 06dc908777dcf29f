package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

const fashionDir = "/usr/share/datasets/fashion-mnist"

func TestPackFashionMNIST(t *testing.T) {
	if _, err := os.Stat(filepath.Join(fashionDir, "t10k-images-idx3-ubyte.gz")); err != nil {
		t.Skip("Debian's dataset-fashion-mnist is not installed")
	}
	images, _, err := readIDX(filepath.Join(fashionDir, "t10k-images-idx3-ubyte.gz"), 0x803, 3)
	if err != nil {
		t.Fatal(err)
	}
	labels, _, err := readIDX(filepath.Join(fashionDir, "t10k-labels-idx1-ubyte.gz"), 0x801, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	const T, patch = 80, 4
	m, err := Pack(FashionMNIST(fashionDir, "test", nil), PackOptions{Out: dir, SeqLen: T, Patch: patch, Channels: 1, ShardRows: 4096, Mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
	if m.Rows != 10000 || m.Docs != 10000 || len(m.Shards) != 3 {
		t.Fatalf("manifest: %d rows, %d docs, %d shards; want one row per image", m.Rows, m.Docs, len(m.Shards))
	}
	sh, err := OpenShards(filepath.Join(dir, ManifestName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	tok, _ := NewTokenizer("byte")
	var r Row
	for _, i := range []int64{0, 1, 4095, 4096, 9999} {
		if err := sh.Row(i, &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Images) != 2 || r.Images[0] != 0 || r.Images[1] != 49 {
			t.Fatalf("row %d: images %v, want 49 patches at 0", i, r.Images)
		}
		// patch k holds pixels of rows 4*(k/7).. and columns 4*(k%7).. of the image
		img := images[i*784 : (i+1)*784]
		for k := 0; k < 49; k++ {
			for y := 0; y < patch; y++ {
				for x := 0; x < patch; x++ {
					want := img[(4*(k/7)+y)*28+4*(k%7)+x]
					if got := r.Pixels[k*16+y*4+x]; got != want {
						t.Fatalf("row %d patch %d pixel (%d,%d) = %d, want %d", i, k, y, x, got, want)
					}
				}
			}
		}
		caption := FashionCaptionPrefix + FashionClasses[labels[i]] + "\n"
		n := 49 + len(caption)
		if got := tok.Decode(r.Tokens[49:n]); got != caption {
			t.Fatalf("row %d: caption %q, want %q", i, got, caption)
		}
		if len(r.Docs) != 2 || r.Docs[0] != int32(n) || len(r.NoLoss) != 2 || r.NoLoss[0] != int32(n) {
			t.Fatalf("row %d: docs %v no_loss %v, want the document then padding", i, r.Docs, r.NoLoss)
		}
	}
	// in a batch, the patches reach the patch list at their flat positions and only the
	// caption is trained on
	s, err := Open(dir, T, 4, 4, 0, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b Batch
	if err := s.Next(&b); err != nil {
		t.Fatal(err)
	}
	if len(b.PatchAt) != 4*49 || len(b.Patches) != 4*49*16 {
		t.Fatalf("batch has %d patches and %d pixels", len(b.PatchAt), len(b.Patches))
	}
	for j := 0; j < 4; j++ {
		if b.PatchAt[j*49] != int32(j*T) {
			t.Fatalf("sequence %d's first patch at %d", j, b.PatchAt[j*49])
		}
		trained := ""
		for t := 0; t < T; t++ {
			if b.Mask[j*T+t] == 1 {
				trained += string(rune(b.Targets[j*T+t]))
			}
		}
		if !strings.HasPrefix(trained, FashionCaptionPrefix) || !strings.HasSuffix(trained, "\n") || len(trained) > len(FashionCaptionPrefix)+12 {
			t.Fatalf("sequence %d trains on %q, want its caption", j, trained)
		}
	}
	for _, v := range b.Patches {
		if v < 0 || v > 1 {
			t.Fatalf("pixel %v outside [0, 1]", v)
		}
	}
}

func TestFashionClass(t *testing.T) {
	for i, c := range FashionClasses {
		if got := FashionClass(c + "\nsomething after"); got != i {
			t.Errorf("FashionClass(%q) = %d, want %d", c, got, i)
		}
	}
	for _, s := range []string{"shirt and trouser\n", "", "sneakers\n", "t-shirt"} {
		if got := FashionClass(s); got != -1 {
			t.Errorf("FashionClass(%q) = %d, want -1", s, got)
		}
	}
}
