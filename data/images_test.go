package data

import (
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herdml/herd/internal/usererr"
)

func TestPackImageFolder(t *testing.T) {
	dir := t.TempDir()
	grey := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range grey.Pix {
		grey.Pix[i] = uint8(i * 3)
	}
	os.MkdirAll(filepath.Join(dir, "img"), 0o755)
	f, _ := os.Create(filepath.Join(dir, "img", "a.png"))
	png.Encode(f, grey)
	f.Close()
	rgb := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for y := 0; y < 16; y++ {
		for x := 0; x < 16; x++ {
			rgb.Set(x, y, color.RGBA{200, 10, 10, 255})
		}
	}
	f, _ = os.Create(filepath.Join(dir, "img", "b.jpg"))
	jpeg.Encode(f, rgb, nil)
	f.Close()
	os.WriteFile(filepath.Join(dir, "caps.csv"), []byte("file,caption\nimg/a.png,a grey ramp\nimg/b.jpg,\"a red square, scaled\"\n"), 0o644)
	out := filepath.Join(dir, "out")
	m, err := Pack(ImageCaptions(filepath.Join(dir, "caps.csv"), 8, 1, nil), PackOptions{Out: out, SeqLen: 30, Patch: 4, Channels: 1})
	if err != nil {
		t.Fatal(err)
	}
	if m.Rows != 2 || m.Docs != 2 {
		t.Fatalf("manifest %+v: want one row per image", m)
	}
	sh, err := OpenShards(filepath.Join(out, ManifestName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	var r Row
	sh.Row(0, &r)
	// the 8x8 PNG, already at size, keeps its pixels: patch 1 is columns 4-7 of rows 0-3
	if len(r.Pixels) != 64 || r.Pixels[16] != grey.Pix[4] || r.Pixels[16+5] != grey.Pix[8+5] {
		t.Fatalf("grey image pixels %v", r.Pixels)
	}
	if got := (byteTokenizer{}).Decode(r.Tokens[4 : 4+12]); got != "a grey ramp\n" {
		t.Fatalf("caption %q", got)
	}
	sh.Row(1, &r)
	// the 16x16 JPEG, scaled to 8x8 and turned grey: red 200 gives grey about 66
	for _, v := range r.Pixels {
		if v < 55 || v > 80 {
			t.Fatalf("scaled grey value %d, want about 66", v)
		}
	}
	cases := []struct{ list, where string }{
		{"file,caption\n../x.png,escape\n", "caps.csv:2"},
		{"file,caption\nimg/missing.png,gone\n", "missing.png"},
		{"name,text\n", "header file,caption"},
	}
	for _, tc := range cases {
		os.WriteFile(filepath.Join(dir, "caps.csv"), []byte(tc.list), 0o644)
		_, err := Pack(ImageCaptions(filepath.Join(dir, "caps.csv"), 8, 1, nil), PackOptions{Out: out + "2", SeqLen: 30, Patch: 4, Channels: 1})
		if !usererr.Is(err) || !strings.Contains(err.Error(), tc.where) {
			t.Errorf("list %q: error %v, want a user error naming %s", tc.list, err, tc.where)
		}
	}
}
