//go:build !amd64 || purego

package cpu

// archImpls: no assembly in this build; the plain-Go GEMM runs.
func archImpls() []*gemmImpl { return nil }
