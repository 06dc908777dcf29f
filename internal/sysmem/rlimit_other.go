//go:build !unix

package sysmem

// rlimits returns nothing: there are no resource limits to read here.
func rlimits() []Limit { return nil }
