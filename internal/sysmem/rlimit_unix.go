//go:build unix

package sysmem

import "syscall"

// rlimits returns RLIMIT_AS and RLIMIT_DATA where they are set.
func rlimits() []Limit {
	var out []Limit
	for _, r := range []struct {
		res  int
		name string
	}{{syscall.RLIMIT_AS, "RLIMIT_AS"}, {syscall.RLIMIT_DATA, "RLIMIT_DATA"}} {
		var l syscall.Rlimit
		if syscall.Getrlimit(r.res, &l) == nil && l.Cur <= 1<<62 { // RLIM_INFINITY is all ones
			out = append(out, Limit{int64(l.Cur), r.name})
		}
	}
	return out
}
