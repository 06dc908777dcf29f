package checkpoint

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
)

// Tensor is a named float32 array: a view into a flat buffer when saving, the destination
// when loading.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32 // len = product of Shape
}

// stEntry is one tensor's line in a safetensors header.
type stEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"` // [begin, end) in bytes, relative to the data section
}

// maxHeader bounds the JSON header we agree to read (the safetensors reference uses 100 MB).
const maxHeader = 100 << 20

// WriteSafetensors writes tensors in the safetensors format
// (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length, a JSON
// header mapping each name to {dtype, shape, data_offsets} plus "__metadata__" (string to
// string), padded with spaces to a multiple of 8 bytes, then the raw little-endian data in
// the order given. The output depends only on the arguments, so equal tensors give equal
// files.
func WriteSafetensors(w io.Writer, meta map[string]string, tensors []Tensor) error {
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, t := range tensors {
		if n := numel(t.Shape); n != len(t.Data) {
			return fmt.Errorf("safetensors: %s has shape %v (%d elements) but %d values", t.Name, t.Shape, n, len(t.Data))
		}
		if _, dup := header[t.Name]; dup {
			return fmt.Errorf("safetensors: tensor %s listed twice", t.Name)
		}
		end := off + 4*int64(len(t.Data))
		header[t.Name] = stEntry{DType: "F32", Shape: t.Shape, DataOffsets: [2]int64{off, end}}
		off = end
	}
	js, err := json.Marshal(header) // map keys come out sorted: deterministic
	if err != nil {
		return err
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(js)))
	bw.Write(n[:])
	bw.Write(js)
	var buf [4]byte
	for _, t := range tensors {
		for _, v := range t.Data {
			binary.LittleEndian.PutUint32(buf[:], math.Float32bits(v))
			bw.Write(buf[:])
		}
	}
	return bw.Flush() // bufio keeps the first write error and returns it here
}

// ReadSafetensors reads a safetensors file into the given tensors and returns its metadata.
// The file must hold exactly these names, each with the same shape, and its data offsets
// must tile the data section without gaps or overlaps; anything else is an error saying
// what differs. Tensors may be F32, or BF16 or F16 (as Hugging Face models are often
// published), which are widened to float32 exactly.
func ReadSafetensors(r io.Reader, into []Tensor) (map[string]string, error) {
	return ReadSafetensorsSkipping(r, into, nil)
}

// ReadSafetensorsSkipping is ReadSafetensors for a file that may also hold tensors skip
// reports true for (a Hugging Face model's vision tower, when only its text model is
// read): their data, of any dtype, is read past. skip may be nil.
func ReadSafetensorsSkipping(r io.Reader, into []Tensor, skip func(name string) bool) (map[string]string, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var n [8]byte
	if _, err := io.ReadFull(br, n[:]); err != nil {
		return nil, fmt.Errorf("safetensors header length: %w", err)
	}
	hlen := binary.LittleEndian.Uint64(n[:])
	if hlen > maxHeader {
		return nil, fmt.Errorf("safetensors header length %d exceeds %d bytes", hlen, maxHeader)
	}
	// Read up to hlen bytes rather than allocate hlen at once: a damaged length must not
	// cost 100 MB when the file is far shorter.
	js, err := io.ReadAll(io.LimitReader(br, int64(hlen)))
	if err != nil {
		return nil, fmt.Errorf("safetensors header: %w", err)
	}
	if uint64(len(js)) != hlen {
		return nil, fmt.Errorf("safetensors header: %w (the header length says %d bytes, the file holds %d)", io.ErrUnexpectedEOF, hlen, len(js))
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("safetensors header: %w", err)
	}
	var meta map[string]string
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, fmt.Errorf("safetensors __metadata__: %w", err)
		}
		delete(raw, "__metadata__")
	}
	want := map[string]int{}
	for i, t := range into {
		want[t.Name] = i
	}
	type placed struct {
		e stEntry
		t int
	}
	var order []placed
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names) // the first error found is the same every time
	var skipped []stEntry
	for _, name := range names {
		js := raw[name]
		var e stEntry
		if err := json.Unmarshal(js, &e); err != nil {
			return nil, fmt.Errorf("safetensors: tensor %s: %w", name, err)
		}
		i, ok := want[name]
		if !ok && skip != nil && skip(name) {
			if e.DataOffsets[1] < e.DataOffsets[0] {
				return nil, fmt.Errorf("safetensors: tensor %s spans bytes %v", name, e.DataOffsets)
			}
			skipped = append(skipped, e)
			continue
		}
		if !ok {
			return nil, fmt.Errorf("safetensors: unexpected tensor %s", name)
		}
		t := into[i]
		width, ok := dtypeWidth[e.DType]
		if !ok {
			return nil, fmt.Errorf("safetensors: tensor %s has dtype %s, want F32, BF16 or F16", name, e.DType)
		}
		if !slices.Equal(e.Shape, t.Shape) {
			return nil, fmt.Errorf("safetensors: tensor %s has shape %v, want %v", name, e.Shape, t.Shape)
		}
		if e.DataOffsets[1]-e.DataOffsets[0] != int64(width)*int64(len(t.Data)) {
			return nil, fmt.Errorf("safetensors: tensor %s spans bytes %v, want %d bytes", name, e.DataOffsets, width*len(t.Data))
		}
		order = append(order, placed{e, i})
	}
	if len(order) != len(into) {
		for _, t := range into {
			if _, ok := raw[t.Name]; !ok {
				return nil, fmt.Errorf("safetensors: tensor %s missing", t.Name)
			}
		}
	}
	for _, e := range skipped {
		order = append(order, placed{e, -1})
	}
	sort.Slice(order, func(a, b int) bool { return order[a].e.DataOffsets[0] < order[b].e.DataOffsets[0] })
	var off int64
	buf := make([]byte, 4096)
	for _, p := range order {
		if p.e.DataOffsets[0] != off {
			name := "a skipped tensor"
			if p.t >= 0 {
				name = "tensor " + into[p.t].Name
			}
			return nil, fmt.Errorf("safetensors: %s starts at byte %d, want %d (gap or overlap)", name, p.e.DataOffsets[0], off)
		}
		if p.t < 0 {
			if _, err := io.CopyN(io.Discard, br, p.e.DataOffsets[1]-p.e.DataOffsets[0]); err != nil {
				return nil, fmt.Errorf("safetensors: data of a skipped tensor: %w", err)
			}
			off = p.e.DataOffsets[1]
			continue
		}
		data, width := into[p.t].Data, dtypeWidth[p.e.DType]
		for i := 0; i < len(data); {
			k := min(len(buf)/width, len(data)-i)
			if _, err := io.ReadFull(br, buf[:width*k]); err != nil {
				return nil, fmt.Errorf("safetensors: data of %s: %w", into[p.t].Name, err)
			}
			for j := range k {
				switch p.e.DType {
				case "F32":
					data[i+j] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*j:]))
				case "BF16": // the top half of a float32
					data[i+j] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(buf[2*j:])) << 16)
				case "F16":
					data[i+j] = halfToFloat32(binary.LittleEndian.Uint16(buf[2*j:]))
				}
			}
			i += k
		}
		off = p.e.DataOffsets[1]
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("safetensors: data continues past the last tensor")
	}
	return meta, nil
}

// dtypeWidth is the size in bytes of each dtype ReadSafetensors reads.
var dtypeWidth = map[string]int{"F32": 4, "BF16": 2, "F16": 2}

// halfToFloat32 widens an IEEE 754 binary16 value to float32 exactly (subnormals,
// infinities and NaNs included).
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp, frac := uint32(h>>10)&0x1f, uint32(h)&0x3ff
	switch {
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: frac·2^-24, exact in float32
		v := float32(frac) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
