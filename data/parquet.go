package data

import (
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/herdml/herd/internal/usererr"
)

// ParquetFiles reads one document per row of each Parquet file pattern selects: the value
// of the string column named column. Files are read in record batches, so memory stays
// bounded by a batch, not by the file. Null values are skipped; an input without a
// non-empty document is a user error.
func ParquetFiles(pattern, column string, progress func(int64)) func(emit func(*RawDoc) error) error {
	return nonEmpty(pattern, func(emit func(*RawDoc) error) error {
		files, err := Glob(pattern)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := readParquet(f.Path, column, progress, emit); err != nil {
				return err
			}
		}
		return nil
	})
}

func readParquet(name, column string, progress func(int64), emit func(*RawDoc) error) error {
	pf, err := file.OpenParquetFile(name, false)
	if err != nil {
		return usererr.New(name, "not a readable Parquet file: %v", err)
	}
	defer pf.Close()
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1024}, memory.DefaultAllocator)
	if err != nil {
		return usererr.New(name, "not a readable Parquet file: %v", err)
	}
	schema, err := fr.Schema()
	if err != nil {
		return usererr.New(name, "unreadable Parquet schema: %v", err)
	}
	idx := schema.FieldIndices(column)
	if len(idx) != 1 {
		return usererr.New(name, "has no column %q; name the text column with --column (columns: %v)", column, schema.Fields())
	}
	rr, err := fr.GetRecordReader(context.Background(), idx, nil)
	if err != nil {
		return usererr.New(name, "cannot read column %q: %v", column, err)
	}
	defer rr.Release()
	row := 0
	for rr.Next() {
		col := rr.RecordBatch().Column(0)
		var value func(int) string
		switch c := col.(type) {
		case *array.String:
			value = c.Value
		case *array.LargeString:
			value = c.Value
		default:
			return usererr.New(name, "column %q holds %s, want strings", column, col.DataType())
		}
		for i := 0; i < col.Len(); i, row = i+1, row+1 {
			if col.IsNull(i) {
				continue
			}
			text := value(i)
			if progress != nil {
				progress(int64(len(text)))
			}
			if err := emit(&RawDoc{Where: fmt.Sprintf("%s row %d", name, row), Text: []byte(text)}); err != nil {
				return err
			}
		}
	}
	if err := rr.Err(); err != nil {
		return usererr.New(name, "cannot read column %q: %v", column, err)
	}
	return nil
}
