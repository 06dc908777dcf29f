package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// checkIPC bounds-checks the flatbuffers of an Arrow IPC file's footer and record batch
// messages before arrow-go decodes them. arrow-go trusts vector lengths in the metadata
// (it allocates a slice per schema field count, for instance), so a damaged file could
// make it allocate without limit; here every table, vector and string must lie inside the
// file, and compressed bodies, which herd never writes, are refused. The shard's sha256 is
// checked first, so this guards against a manifest written for a damaged file.
func checkIPC(data []byte) error {
	magic := []byte("ARROW1")
	n := len(data)
	if n < 2*8+4 || !bytes.HasPrefix(data, magic) || !bytes.HasSuffix(data, magic) {
		return errors.New("no Arrow file magic at its start and end")
	}
	flen := int(int32(binary.LittleEndian.Uint32(data[n-10:])))
	if flen <= 0 || flen > n-10-8 {
		return fmt.Errorf("footer length %d outside the file", flen)
	}
	footer, err := fbRoot(data[n-10-flen : n-10])
	if err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	schema, ok, err := footer.table(1)
	if err != nil || !ok {
		return fmt.Errorf("footer schema: missing or %v", err)
	}
	// big-endian data would be byte-swapped in place, inside the read-only mapping
	if e, err := schema.scalar16(0); err != nil || e != 0 {
		return errors.New("schema is not little-endian")
	}
	budget := 1024 // fields; a vector pointing back at its own table must not loop for ever
	if err := checkFields(schema, 0, &budget); err != nil {
		return err
	}
	if err := checkKeyValues(schema, 2); err != nil {
		return err
	}
	if err := checkKeyValues(footer, 4); err != nil {
		return err
	}
	if _, _, err := footer.vector(2, 24); err != nil {
		return fmt.Errorf("dictionary blocks: %w", err)
	}
	at, nb, err := footer.vector(3, 24)
	if err != nil {
		return fmt.Errorf("record batch blocks: %w", err)
	}
	for i := 0; i < nb; i++ {
		blk := footer.buf[at+24*i:]
		off, meta := int64(binary.LittleEndian.Uint64(blk)), int64(int32(binary.LittleEndian.Uint32(blk[8:])))
		if off < 8 || meta < 8 || off+meta > int64(n) {
			return fmt.Errorf("record batch %d metadata at %d+%d outside the file", i, off, meta)
		}
		msg := data[off : off+meta]
		if binary.LittleEndian.Uint32(msg) == 0xFFFFFFFF { // continuation marker, then length
			msg = msg[8:]
		} else {
			msg = msg[4:]
		}
		if err := checkMessage(msg); err != nil {
			return fmt.Errorf("record batch %d: %w", i, err)
		}
	}
	return nil
}

// checkMessage checks a RecordBatch message: its nodes and buffers vectors, and that the
// body is not compressed.
func checkMessage(buf []byte) error {
	m, err := fbRoot(buf)
	if err != nil {
		return err
	}
	rb, ok, err := m.table(2)
	if err != nil || !ok {
		return fmt.Errorf("message header: missing or %v", err)
	}
	if _, _, err := rb.vector(1, 16); err != nil {
		return fmt.Errorf("field nodes: %w", err)
	}
	if _, _, err := rb.vector(2, 16); err != nil {
		return fmt.Errorf("buffers: %w", err)
	}
	if _, compressed, err := rb.table(3); err != nil || compressed {
		return errors.New("compressed record batch bodies are not part of herd's format")
	}
	if _, _, err := rb.vector(4, 8); err != nil {
		return fmt.Errorf("variadic buffer counts: %w", err)
	}
	return checkKeyValues(m, 4)
}

// checkFields walks a Schema's or Field's vector of Field tables (slot 1 of a Schema, 5
// of a Field), visiting at most *budget fields in all.
func checkFields(t fbTable, depth int, budget *int) error {
	slot := 1
	if depth > 0 {
		slot = 5
	}
	if depth > 32 {
		return errors.New("schema nested too deeply")
	}
	fields, err := t.tables(slot)
	if err != nil {
		return fmt.Errorf("schema fields: %w", err)
	}
	for _, f := range fields {
		if *budget--; *budget < 0 {
			return errors.New("schema has too many fields")
		}
		if _, _, err := f.vector(0, 1); err != nil { // name
			return fmt.Errorf("field name: %w", err)
		}
		for _, slot := range []int{3, 4} { // type, dictionary
			if _, _, err := f.table(slot); err != nil {
				return fmt.Errorf("field type: %w", err)
			}
		}
		if err := checkFields(f, depth+1, budget); err != nil {
			return err
		}
		if err := checkKeyValues(f, 6); err != nil {
			return err
		}
	}
	return nil
}

func checkKeyValues(t fbTable, slot int) error {
	kvs, err := t.tables(slot)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for _, kv := range kvs {
		for s := 0; s < 2; s++ {
			if _, _, err := kv.vector(s, 1); err != nil {
				return fmt.Errorf("metadata entry: %w", err)
			}
		}
	}
	return nil
}

// fbTable is a flatbuffers table whose vtable has been checked to lie inside buf.
type fbTable struct {
	buf      []byte
	pos      int
	vt, vlen int
}

var errBounds = errors.New("reference outside the metadata")

func u32(buf []byte, p int) (int, bool) {
	if p < 0 || p+4 > len(buf) {
		return 0, false
	}
	return int(binary.LittleEndian.Uint32(buf[p:])), true
}

func fbRoot(buf []byte) (fbTable, error) {
	off, ok := u32(buf, 0)
	if !ok {
		return fbTable{}, errBounds
	}
	return fbAt(buf, off)
}

func fbAt(buf []byte, pos int) (fbTable, error) {
	so, ok := u32(buf, pos)
	if !ok {
		return fbTable{}, errBounds
	}
	vt := pos - int(int32(so))
	if vt < 0 || vt+4 > len(buf) {
		return fbTable{}, errBounds
	}
	vlen := int(binary.LittleEndian.Uint16(buf[vt:]))
	if vlen < 4 || vt+vlen > len(buf) {
		return fbTable{}, errBounds
	}
	return fbTable{buf: buf, pos: pos, vt: vt, vlen: vlen}, nil
}

// ref follows the offset in field slot; ok is false when the field is absent.
func (t fbTable) ref(slot int) (int, bool, error) {
	e := 4 + 2*slot
	if e+2 > t.vlen {
		return 0, false, nil
	}
	fo := int(binary.LittleEndian.Uint16(t.buf[t.vt+e:]))
	if fo == 0 {
		return 0, false, nil
	}
	p := t.pos + fo
	off, ok := u32(t.buf, p)
	if !ok || p+off >= len(t.buf) {
		return 0, false, errBounds
	}
	return p + off, true, nil
}

// scalar16 reads a 16-bit scalar field; an absent field is its default, 0.
func (t fbTable) scalar16(slot int) (int, error) {
	e := 4 + 2*slot
	if e+2 > t.vlen {
		return 0, nil
	}
	fo := int(binary.LittleEndian.Uint16(t.buf[t.vt+e:]))
	if fo == 0 {
		return 0, nil
	}
	if t.pos+fo+2 > len(t.buf) {
		return 0, errBounds
	}
	return int(binary.LittleEndian.Uint16(t.buf[t.pos+fo:])), nil
}

func (t fbTable) table(slot int) (fbTable, bool, error) {
	p, ok, err := t.ref(slot)
	if !ok || err != nil {
		return fbTable{}, ok, err
	}
	tt, err := fbAt(t.buf, p)
	return tt, err == nil, err
}

// vector returns the start and length of the vector in field slot, whose elements of
// size bytes must lie inside buf; an absent vector is empty.
func (t fbTable) vector(slot, size int) (int, int, error) {
	p, ok, err := t.ref(slot)
	if !ok || err != nil {
		return 0, 0, err
	}
	n, ok := u32(t.buf, p)
	if !ok || n > (len(t.buf)-p-4)/size {
		return 0, 0, errBounds
	}
	return p + 4, n, nil
}

func (t fbTable) tables(slot int) ([]fbTable, error) {
	at, n, err := t.vector(slot, 4)
	if err != nil {
		return nil, err
	}
	out := make([]fbTable, n)
	for i := range out {
		off, _ := u32(t.buf, at+4*i)
		if out[i], err = fbAt(t.buf, at+4*i+off); err != nil {
			return nil, err
		}
	}
	return out, nil
}
