package data

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdml/herd/internal/usererr"
)

// FashionClasses are Fashion-MNIST's labels 0-9 as captions name them.
var FashionClasses = []string{"t-shirt/top", "trouser", "pullover", "dress", "coat",
	"sandal", "shirt", "sneaker", "bag", "ankle boot"}

// FashionCaptionPrefix starts every Fashion-MNIST caption; the class name and a newline
// follow, so a model's greedy decode after the prefix ends at the newline.
const FashionCaptionPrefix = "a photo of a "

// FashionMNIST reads the IDX files of one split ("train" or "test") from dir, as Debian's
// dataset-fashion-mnist ships them (gzip-compressed, /usr/share/datasets/fashion-mnist):
// each 28x28 grey image becomes a document of its patches followed by its caption
// "a photo of a <class>\n".
func FashionMNIST(dir, split string, progress func(int64)) func(emit func(*RawDoc) error) error {
	return func(emit func(*RawDoc) error) error {
		prefix := map[string]string{"train": "train", "test": "t10k"}[split]
		if prefix == "" {
			return usererr.New("--split", "unknown Fashion-MNIST split %q; allowed: train, test", split)
		}
		imgPath := filepath.Join(dir, prefix+"-images-idx3-ubyte.gz")
		lblPath := filepath.Join(dir, prefix+"-labels-idx1-ubyte.gz")
		images, dims, err := readIDX(imgPath, 0x803, 3)
		if err != nil {
			return err
		}
		labels, ldims, err := readIDX(lblPath, 0x801, 1)
		if err != nil {
			return err
		}
		n, h, w := dims[0], dims[1], dims[2]
		if ldims[0] != n {
			return usererr.New(lblPath, "holds %d labels for %d images in %s", ldims[0], n, imgPath)
		}
		for i := 0; i < n; i++ {
			where := fmt.Sprintf("%s image %d", imgPath, i)
			if int(labels[i]) >= len(FashionClasses) {
				return usererr.New(lblPath, "label %d of image %d is not a Fashion-MNIST class (0-9)", labels[i], i)
			}
			if progress != nil {
				progress(1)
			}
			caption := FashionCaptionPrefix + FashionClasses[labels[i]] + "\n"
			im := &Image{H: h, W: w, C: 1, Pix: images[i*h*w : (i+1)*h*w]}
			if err := emit(&RawDoc{Where: where, Text: []byte(caption), Image: im}); err != nil {
				return err
			}
		}
		return nil
	}
}

// readIDX reads a gzip-compressed IDX file of unsigned bytes with the given magic number
// and number of dimensions.
func readIDX(name string, magic uint32, ndim int) ([]byte, []int, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, usererr.New(name, "cannot read Fashion-MNIST file: %v (on Debian: apt-get install dataset-fashion-mnist)", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(name, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, nil, usererr.New(name, "not a gzip file: %v", err)
		}
		r = gz
	}
	head := make([]uint32, 1+ndim)
	if err := binary.Read(r, binary.BigEndian, head); err != nil || head[0] != magic {
		return nil, nil, usererr.New(name, "not an IDX file of magic %#x", magic)
	}
	dims, size := make([]int, ndim), 1
	for i := range dims {
		dims[i] = int(head[1+i])
		size *= dims[i]
	}
	if size <= 0 || size > 1<<31 {
		return nil, nil, usererr.New(name, "implausible IDX dimensions %v", dims)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, nil, usererr.New(name, "truncated IDX file: %v", err)
	}
	return body, dims, nil
}

// FashionClass maps a model's greedy continuation of FashionCaptionPrefix to a label: the
// class whose name is the text up to the first newline, or -1 if none matches. Caption
// accuracy on the test split is the share of images whose continuation names their label.
func FashionClass(continuation string) int {
	name, _, _ := strings.Cut(continuation, "\n")
	for i, c := range FashionClasses {
		if name == c {
			return i
		}
	}
	return -1
}
