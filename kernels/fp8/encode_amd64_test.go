//go:build amd64 && !purego

package fp8

func init() {
	if hasAVX2 {
		useAsm = func(on bool) { hasAVX2 = on }
	}
}
