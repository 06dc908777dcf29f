package layering

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/herdml/herd"

// layers gives each top-level folder of the module its layer, higher importing lower.
var layers = map[string]int{
	"internal": 0,
	"kernels":  1, "metap": 1, "data": 1,
	"trainer":   2,
	"workflows": 3,
	"cmd":       4, "tools": 4, "bench": 4,
}

// cpuBackend is the CPU backend's package; cpuChoosers may import it, nothing else.
const cpuBackend = "kernels/cpu"

var cpuChoosers = []string{"kernels/cpu", "kernels/device"}

// pkg is one package of the module, its path and that of every module package it or
// its tests import, relative to the module.
type pkg struct {
	path    string
	imports []string
}

// modulePackages lists the module's packages with go list, tests' imports included.
func modulePackages(t *testing.T) []pkg {
	t.Helper()
	format := `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}`
	cmd := exec.Command("go", "list", "-f", format, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		p := pkg{path: strings.TrimPrefix(fields[0], module+"/")}
		for _, imp := range fields[1:] {
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok && rel != p.path && !slices.Contains(p.imports, rel) {
				p.imports = append(p.imports, rel)
			}
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages of %s: not run inside the module?\n%s", len(pkgs), module, out)
	}
	return pkgs
}

// folder is the top-level folder of a module-relative package path.
func folder(path string) string {
	f, _, _ := strings.Cut(path, "/")
	return f
}

// upward lists, as sentences, the imports of pkgs that break the layers, and every
// package whose folder has no layer.
func upward(pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		from, ok := layers[folder(p.path)]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: folder %s has no layer (add it to layers)", p.path, folder(p.path)))
			continue
		}
		for _, imp := range p.imports {
			to, ok := layers[folder(imp)]
			switch {
			case !ok:
				continue // reported as a package of its own
			case to > from:
				bad = append(bad, fmt.Sprintf("%s imports %s, a higher layer", p.path, imp))
			case to == from && folder(imp) != folder(p.path):
				bad = append(bad, fmt.Sprintf("%s imports %s, of its own layer but another folder", p.path, imp))
			}
		}
	}
	return bad
}

// cpuImporters lists the packages of pkgs, tests included, that import the CPU backend
// but may not.
func cpuImporters(pkgs []pkg) []string {
	var bad []string
	for _, p := range pkgs {
		if slices.Contains(p.imports, cpuBackend) && !slices.Contains(cpuChoosers, p.path) {
			bad = append(bad, p.path)
		}
	}
	return bad
}

// Every import of the module goes down the layers (see the package doc).
func TestLayers(t *testing.T) {
	for _, b := range upward(modulePackages(t)) {
		t.Error(b)
	}
}

// Nothing but the backend chooser imports the CPU backend (see the package doc).
func TestOnlyTheChooserImportsCPU(t *testing.T) {
	for _, p := range cpuImporters(modulePackages(t)) {
		t.Errorf("%s imports %s: only %s may; go through kernels/device", p, cpuBackend, strings.Join(cpuChoosers, " and "))
	}
}

// The checks find what they must: an upward import, one across folders of a layer, a
// folder without a layer, a test's import of the CPU backend; and they allow imports down
// the layers and within a folder.
func TestChecksCatchViolations(t *testing.T) {
	pkgs := []pkg{
		{path: "cmd/herd", imports: []string{"workflows", "workflows/client", "trainer", "internal/usererr"}},
		{path: "workflows/client", imports: []string{"workflows"}},
		{path: "trainer/model", imports: []string{"trainer/config", "kernels", "data", "metap"}},
		{path: "kernels/device", imports: []string{"kernels/cpu"}},
		{path: "kernels", imports: []string{"trainer"}},
		{path: "data", imports: []string{"kernels"}},
		{path: "internal/metrics", imports: []string{"trainer"}},
		{path: "cmd/herd", imports: []string{"tools/fp8parity"}},
		{path: "scratch/x", imports: []string{"internal/usererr"}},
		{path: "trainer/optim", imports: []string{"kernels/cpu"}},
	}
	want := []string{
		"kernels imports trainer, a higher layer",
		"data imports kernels, of its own layer but another folder",
		"internal/metrics imports trainer, a higher layer",
		"cmd/herd imports tools/fp8parity, of its own layer but another folder",
		"scratch/x: folder scratch has no layer (add it to layers)",
	}
	if got := upward(pkgs); !slices.Equal(got, want) {
		t.Errorf("upward:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := cpuImporters(pkgs); !slices.Equal(got, []string{"trainer/optim"}) {
		t.Errorf("cpuImporters: %v, want [trainer/optim]", got)
	}
}
