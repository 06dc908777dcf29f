// Package sysmem says how much memory this process may use, so that herd can refuse a
// run that would not fit before allocating it, with a message, rather than be killed by
// the kernel or die in the Go runtime with a trace.
package sysmem

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
)

// Limit is the smallest of the memory limits that apply to this process.
type Limit struct {
	Bytes  int64  // 0 when no limit could be read
	Source string // what sets it: "physical memory", "cgroup memory.max", "RLIMIT_AS", "GOMEMLIMIT", ...
}

// Lookup reads the limits that apply to this process and returns the smallest: physical
// memory (/proc/meminfo), the cgroup's limit (v2 memory.max, v1 memory.limit_in_bytes,
// on the process's cgroup and every one above it), RLIMIT_AS and RLIMIT_DATA where set,
// and the Go runtime's soft limit (GOMEMLIMIT, or debug.SetMemoryLimit) where set.
func Lookup() Limit {
	return system{root: "/", rlimits: rlimits, goLimit: debug.SetMemoryLimit(-1)}.lookup()
}

// system is where Lookup reads: a root holding proc/ and sys/, the resource limits, and
// the Go runtime's limit. Tests point it at a folder of their own.
type system struct {
	root    string
	rlimits func() []Limit
	goLimit int64 // math.MaxInt64 = none
}

func (s system) lookup() Limit {
	var all []Limit
	if kb := s.meminfo("MemTotal"); kb > 0 {
		all = append(all, Limit{kb * 1024, "physical memory"})
	}
	all = append(all, s.cgroup()...)
	all = append(all, s.rlimits()...)
	if s.goLimit > 0 && s.goLimit < math.MaxInt64 {
		all = append(all, Limit{s.goLimit, "GOMEMLIMIT"})
	}
	var least Limit
	for _, l := range all {
		if l.Bytes > 0 && (least.Bytes == 0 || l.Bytes < least.Bytes) {
			least = l
		}
	}
	return least
}

// meminfo returns the value of key in /proc/meminfo, in kB (0 if absent).
func (s system) meminfo(key string) int64 {
	f, err := os.Open(filepath.Join(s.root, "proc", "meminfo"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if ok && name == key {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// cgroup returns the memory limits of the process's cgroup and of every cgroup above it,
// as far as they are visible here. /proc/self/cgroup names the cgroup: "0::/path" for
// v2, "N:memory:/path" (or "N:...,memory,...:/path") for v1's memory controller. Inside
// a container the path may lie outside the mounted hierarchy: the walk to the root then
// reads the container's own limit there.
func (s system) cgroup() []Limit {
	b, err := os.ReadFile(filepath.Join(s.root, "proc", "self", "cgroup"))
	if err != nil {
		return nil
	}
	var out []Limit
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			out = append(out, s.walk(filepath.Join("sys", "fs", "cgroup"), parts[2], "memory.max")...)
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			out = append(out, s.walk(filepath.Join("sys", "fs", "cgroup", "memory"), parts[2], "memory.limit_in_bytes")...)
		}
	}
	return out
}

// walk reads file in cgroup dir under mount and in each of its parents. "max" and
// unreadable files are no limit; v1 writes "no limit" as a number near 2^63, which the
// physical memory undercuts.
func (s system) walk(mount, dir, file string) []Limit {
	var out []Limit
	for dir = path.Clean("/" + dir); ; dir = path.Dir(dir) {
		b, err := os.ReadFile(filepath.Join(s.root, mount, dir, file))
		if n, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && perr == nil && n > 0 {
			out = append(out, Limit{n, "cgroup " + file})
		}
		if dir == "/" {
			return out
		}
	}
}

// Format prints a size in binary units: 1<<30 -> "1 GiB".
func Format(n int64) string {
	v := float64(n)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"} {
		if v < 1024 || u == "PiB" {
			return fmt.Sprintf("%.3g %s", v, u)
		}
		v /= 1024
	}
	panic("unreachable")
}
