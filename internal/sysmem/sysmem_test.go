package sysmem

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// fakeRoot writes files (path relative to the root -> content) into a new folder.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, text := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const meminfo = "MemTotal:       16384 kB\nMemFree:        8192 kB\n"

// TestLookupTakesTheSmallest: whichever source is smallest sets the limit and is named.
func TestLookupTakesTheSmallest(t *testing.T) {
	v2 := map[string]string{
		"proc/meminfo":                      meminfo,
		"proc/self/cgroup":                  "0::/user/job\n",
		"sys/fs/cgroup/user/job/memory.max": "max\n",
		"sys/fs/cgroup/user/memory.max":     "8388608\n", // a parent's limit binds its children
	}
	v1 := map[string]string{
		"proc/meminfo":     meminfo,
		"proc/self/cgroup": "5:cpu,cpuacct:/a\n4:memory:/outside/the/mount\n",
		// In a container the path is not under the mount: the mount's own limit applies.
		"sys/fs/cgroup/memory/memory.limit_in_bytes": "4194304\n",
	}
	for _, c := range []struct {
		name    string
		files   map[string]string
		rlimits []Limit
		goLimit int64
		want    Limit
	}{
		{"physical", map[string]string{"proc/meminfo": meminfo}, nil, math.MaxInt64, Limit{16 << 20, "physical memory"}},
		{"cgroup v2 parent", v2, nil, math.MaxInt64, Limit{8 << 20, "cgroup memory.max"}},
		{"cgroup v1", v1, nil, math.MaxInt64, Limit{4 << 20, "cgroup memory.limit_in_bytes"}},
		{"rlimit", v1, []Limit{{2 << 20, "RLIMIT_AS"}, {3 << 20, "RLIMIT_DATA"}}, math.MaxInt64, Limit{2 << 20, "RLIMIT_AS"}},
		{"GOMEMLIMIT", v2, []Limit{{2 << 20, "RLIMIT_DATA"}}, 1 << 20, Limit{1 << 20, "GOMEMLIMIT"}},
		{"nothing readable", nil, nil, math.MaxInt64, Limit{}},
	} {
		rl := func() []Limit { return c.rlimits }
		got := system{root: fakeRoot(t, c.files), rlimits: rl, goLimit: c.goLimit}.lookup()
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestLookupHere reads this machine: some limit, at least physical memory, is found.
func TestLookupHere(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc/meminfo here")
	}
	if l := Lookup(); l.Bytes <= 0 || l.Source == "" {
		t.Errorf("Lookup() = %+v, want a limit and its source", l)
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{512: "512 B", 6 << 30: "6 GiB", 1536 << 40: "1.5 PiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}
