package data

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // decoders for image.Decode
	_ "image/png"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/image/draw"

	"github.com/herdml/herd/internal/usererr"
)

// ImageCaptions reads images with captions listed in a JSONL file (objects with "file" and
// "caption") or a CSV file (header "file,caption"). Image paths are relative to the list's
// folder and may not leave it. Each PNG or JPEG image is scaled to size×size pixels when
// size > 0 (bilinear, deterministic) and converted to channels 1 (grey) or 3 (RGB); it
// becomes a document of its patches followed by its caption and a newline.
func ImageCaptions(list string, size, channels int, progress func(int64)) func(emit func(*RawDoc) error) error {
	return func(emit func(*RawDoc) error) error {
		if channels != 1 && channels != 3 {
			return usererr.New("--channels", "must be 1 (grey) or 3 (RGB), got %d", channels)
		}
		f, err := os.Open(list)
		if err != nil {
			return usererr.New(list, "cannot read the caption list: %v", err)
		}
		defer f.Close()
		dir := filepath.Dir(list)
		return readCaptions(f, list, func(where, file, caption string) error {
			if !filepath.IsLocal(filepath.FromSlash(file)) {
				return usererr.New(where, "image path %q must be relative and stay inside %s", file, dir)
			}
			im, err := loadImage(filepath.Join(dir, filepath.FromSlash(file)), size, channels)
			if err != nil {
				return err
			}
			if progress != nil {
				progress(1)
			}
			return emit(&RawDoc{Where: where, Image: im, Text: []byte(caption + "\n")})
		})
	}
}

// readCaptions calls fn with each (file, caption) pair of a JSONL or CSV list.
func readCaptions(r io.Reader, list string, fn func(where, file, caption string) error) error {
	if strings.HasSuffix(list, ".csv") {
		cr := csv.NewReader(r)
		head, err := cr.Read()
		if err != nil || len(head) < 2 || head[0] != "file" || head[1] != "caption" {
			return usererr.New(list, "a caption CSV starts with the header file,caption")
		}
		for line := 2; ; line++ {
			rec, err := cr.Read()
			if err == io.EOF {
				return nil
			}
			where := fmt.Sprintf("%s:%d", list, line)
			if err != nil {
				return usererr.New(where, "bad CSV: %v", err)
			}
			if err := fn(where, rec[0], rec[1]); err != nil {
				return err
			}
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", list, line)
		var rec struct{ File, Caption string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.File == "" {
			return usererr.New(where, "want a JSON object with \"file\" and \"caption\"")
		}
		if err := fn(where, rec.File, rec.Caption); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return usererr.New(list, "cannot read: %v", err)
	}
	return nil
}

func loadImage(name string, size, channels int) (*Image, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, usererr.New(name, "cannot read image: %v", err)
	}
	defer f.Close()
	src, _, err := image.Decode(f)
	if err != nil {
		return nil, usererr.New(name, "not a PNG or JPEG image: %v", err)
	}
	if size > 0 {
		dst := image.NewRGBA(image.Rect(0, 0, size, size))
		draw.BiLinear.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
		src = dst
	}
	b := src.Bounds()
	im := &Image{H: b.Dy(), W: b.Dx(), C: channels, Pix: make([]uint8, 0, b.Dx()*b.Dy()*channels)}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := src.At(x, y)
			if channels == 1 {
				im.Pix = append(im.Pix, color.GrayModel.Convert(c).(color.Gray).Y)
				continue
			}
			r, g, bl, _ := c.RGBA()
			im.Pix = append(im.Pix, uint8(r>>8), uint8(g>>8), uint8(bl>>8))
		}
	}
	return im, nil
}
