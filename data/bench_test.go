package data

import "testing"

// BenchmarkReadGoSources reads every .go file of GOROOT/src, as the demo does.
func BenchmarkReadGoSources(b *testing.B) {
	var n int64
	for b.Loop() {
		c, err := ReadCorpus("${GOROOT}/src/**/*.go")
		if err != nil {
			b.Fatal(err)
		}
		n = int64(len(c.Bytes))
	}
	b.SetBytes(n)
}
