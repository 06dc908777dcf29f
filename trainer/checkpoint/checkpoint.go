// Package checkpoint saves and restores everything that shapes a run's future, so that
// resuming gives weights bit-identical to never stopping. A checkpoint is a directory per
// step (see docs/checkpoint.md):
//
//	<dir>/<run>/step-00000200/
//	    model.safetensors   weights, one tensor per model.Layout entry, F32
//	    optim.safetensors   AdamW moments "m.<tensor>" and "v.<tensor>", F32
//	    state.json          step, data position per rank, RNG, config and its hash, MetaP table hash, FP8 state
//	    manifest.json       format version, size and sha256 of the three files above
//
// In a folder it is written under a temporary name and renamed when complete; in a bucket
// (Objects) its manifest is uploaded last. Latest is the newest checkpoint whose manifest
// verifies.
package checkpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/herdml/herd/data"
	"github.com/herdml/herd/internal/storage"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// Format is the checkpoint format version written in every manifest and state file.
//
//	1: first version.
const Format = 1

// File names inside a checkpoint.
const (
	ModelFile    = "model.safetensors"
	OptimFile    = "optim.safetensors"
	StateFile    = "state.json"
	ManifestFile = "manifest.json"
)

// State is state.json: the small, non-tensor part of a checkpoint.
type State struct {
	Format     int             `json:"format"`
	Step       int64           `json:"step"`        // optimizer steps completed
	Data       []data.State    `json:"data"`        // each rank's position in the training stream, by rank
	RNG        []byte          `json:"rng"`         // the trainer's random generator (binary-marshalled, base64 in JSON)
	Config     json.RawMessage `json:"config"`      // the whole run configuration it was trained with (for messages, eval and export)
	ConfigHash string          `json:"config_hash"` // identity of the training trajectory the config gives (config.Run.Hash)
	TableHash  string          `json:"table_hash"`  // metap.Table.Hash() of the parametrization
	FP8        json.RawMessage `json:"fp8"`         // FP8 scaling state (amax histories), filled by the FP8 component; null without it
	// Base and BaseSHA256 name the frozen base of a LoRA run, whose weights the checkpoint
	// does not hold: init.from's path, and the sha256 of its weights as the run loaded
	// them (float32, layout order). Empty otherwise.
	Base       string `json:"base,omitempty"`
	BaseSHA256 string `json:"base_sha256,omitempty"`
	// Lineage lists the config keys that resumes changed (train.steps, train.optim.lr,
	// train.schedule.*), each at the step it took effect after, oldest first: Config is
	// the config after the last of them. Empty for a run trained as it was started.
	Lineage []config.Change `json:"lineage,omitempty"`
}

// Snapshot is a whole checkpoint in memory. On Save the tensors are views into the
// trainer's flat buffers (nothing is copied); on Load they are the destinations to fill.
type Snapshot struct {
	State     State
	Model     []Tensor          // model weights
	Optim     []Tensor          // optimizer tensors, named "m.<tensor>" and "v.<tensor>"
	OptimMeta map[string]string // optimizer scalars (e.g. the Adam step count), safetensors metadata of optim.safetensors
}

// Name is the directory name of the checkpoint after step: zero-padded so that names sort
// in step order.
func Name(step int64) string { return fmt.Sprintf("step-%08d", step) }

// IsName reports whether name is a checkpoint's name, as Name makes them.
func IsName(name string) bool { _, ok := parseName(name); return ok }

// parseName returns the step of a checkpoint name, or false if name is not one.
func parseName(name string) (int64, bool) {
	s, ok := strings.CutPrefix(name, "step-")
	if !ok {
		return 0, false
	}
	step, err := strconv.ParseInt(s, 10, 64)
	return step, err == nil && step >= 0
}

// Manifest is manifest.json: the format and a checksum of every other file.
type Manifest struct {
	Format int        `json:"format"`
	Files  []FileInfo `json:"files"`
}

// FileInfo is one file's size and sha256.
type FileInfo struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Save writes snap as checkpoint Name(snap.State.Step) and returns that name.
func Save(s Storage, snap Snapshot) (string, error) {
	st := snap.State
	st.Format = Format
	if st.FP8 == nil {
		st.FP8 = json.RawMessage("null")
	}
	var sums []FileInfo
	hashed := func(name string, write func(io.Writer) error) File {
		return File{Name: name, Write: func(w io.Writer) error {
			h := &counter{Hash: sha256.New()}
			if err := write(io.MultiWriter(w, h)); err != nil {
				return err
			}
			sums = append(sums, FileInfo{Name: name, Size: h.n, SHA256: hex.EncodeToString(h.Sum(nil))})
			return nil
		}}
	}
	files := []File{
		hashed(ModelFile, func(w io.Writer) error {
			return WriteSafetensors(w, map[string]string{"format": "herd", "step": strconv.FormatInt(st.Step, 10)}, snap.Model)
		}),
		hashed(OptimFile, func(w io.Writer) error { return WriteSafetensors(w, snap.OptimMeta, snap.Optim) }),
		hashed(StateFile, func(w io.Writer) error { return writeJSON(w, st) }),
		// Commit writes files in order, so the three sums are complete here.
		{Name: ManifestFile, Write: func(w io.Writer) error { return writeJSON(w, Manifest{Format: Format, Files: sums}) }},
	}
	name := Name(st.Step)
	if err := s.Commit(name, files); err != nil {
		return "", fmt.Errorf("saving checkpoint: %w", err)
	}
	return name, nil
}

func writeJSON(w io.Writer, v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(js, '\n'))
	return err
}

// counter is a hash that also counts the bytes written.
type counter struct {
	hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.Hash.Write(p)
}

// Where locates a file of checkpoint name for messages: a path, or a URL in an object
// store.
func Where(s Storage, name, file string) string {
	if str, ok := s.(fmt.Stringer); ok {
		return storage.Join(str.String(), name, file)
	}
	return path.Join(name, file)
}

// corrupt is a user error about one file of a checkpoint. It says what is wrong, not what
// to do, which depends on who picked the checkpoint: see named and Latest.
func corrupt(s Storage, name, file, format string, args ...any) error {
	return usererr.New(Where(s, name, file), "unreadable checkpoint: "+format, args...)
}

// named adds what to do to a user error about a checkpoint that the user named.
func named(err error) error {
	var u *usererr.Error
	if errors.As(err, &u) {
		return usererr.New(u.Where, "%s; name another checkpoint, or the run's folder to use its newest valid one", u.What)
	}
	return err
}

// Verify checks checkpoint name against its manifest: the format is one this code reads,
// every file is listed, and every file has the recorded size and sha256. Errors are user
// errors naming the file, for a checkpoint the user named.
func Verify(s Storage, name string) error { return named(verify(s, name)) }

func verify(s Storage, name string) error {
	m, err := readManifest(s, name)
	if err != nil {
		return err
	}
	// A name from the manifest is never opened unchecked: it could lead anywhere.
	if err := checkListing(m); err != nil {
		return corrupt(s, name, ManifestFile, "%v", err)
	}
	for _, f := range m.Files {
		if err := verifyFile(s, name, f); err != nil {
			return err
		}
	}
	return nil
}

// checkListing checks that m lists each of the three checkpoint files once, and nothing
// else.
func checkListing(m Manifest) error {
	listed := map[string]bool{}
	for _, f := range m.Files {
		if f.Name != ModelFile && f.Name != OptimFile && f.Name != StateFile || listed[f.Name] {
			return fmt.Errorf("lists %q, which is not a checkpoint file or is listed twice", f.Name)
		}
		listed[f.Name] = true
	}
	for _, f := range []string{ModelFile, OptimFile, StateFile} {
		if !listed[f] {
			return fmt.Errorf("%s is not listed", f)
		}
	}
	return nil
}

func readManifest(s Storage, name string) (Manifest, error) {
	var m Manifest
	r, err := s.Open(name, ManifestFile)
	if errors.Is(err, fs.ErrNotExist) {
		return m, corrupt(s, name, ManifestFile, "no such file: not a checkpoint folder, or one whose save never finished")
	}
	if err != nil {
		return m, corrupt(s, name, ManifestFile, "%v", err)
	}
	defer r.Close()
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return m, corrupt(s, name, ManifestFile, "not valid JSON: %v", err)
	}
	if m.Format != Format {
		return m, corrupt(s, name, ManifestFile, "format %d, this herd reads format %d (a newer herd wrote it? upgrade herd)", m.Format, Format)
	}
	return m, nil
}

func verifyFile(s Storage, name string, f FileInfo) error {
	r, err := s.Open(name, f.Name)
	if err != nil {
		return corrupt(s, name, f.Name, "%v", err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return corrupt(s, name, f.Name, "%v", err)
	}
	if n != f.Size {
		return corrupt(s, name, f.Name, "%d bytes, the manifest says %d", n, f.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != f.SHA256 {
		return corrupt(s, name, f.Name, "sha256 %s, the manifest says %s", sum, f.SHA256)
	}
	return nil
}

// steps lists the checkpoints in s newest first, ignoring names that are not checkpoints.
func steps(s Storage) ([]string, error) {
	names, err := s.List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if _, ok := parseName(n); ok {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := parseName(out[i])
		b, _ := parseName(out[j])
		return a > b
	})
	return out, nil
}

// ErrNone means a storage holds no valid checkpoint.
var ErrNone = errors.New("no valid checkpoint")

// Latest returns the newest checkpoint whose manifest verifies. Each newer checkpoint that
// does not verify is skipped, with a warning that names it and says why. It returns ErrNone
// when no checkpoint verifies. It changes nothing: see Recover for the run's owner.
func Latest(s Storage) (name string, warnings []string, err error) {
	return latest(s, func(n string, err error) (string, error) {
		return fmt.Sprintf("skipping damaged checkpoint %s (looking for the newest valid one): %v", n, err), nil
	})
}

// Recover is Latest for the trainer that owns the run (and holds its Lock): it moves each
// damaged checkpoint newer than the one it returns aside, under a name that List leaves
// out (see SetAside), and its warning says where. Training then saves those steps afresh,
// and retention never counts or deletes the damaged copies.
func Recover(s Storage) (name string, warnings []string, err error) {
	return latest(s, func(n string, err error) (string, error) {
		aside, merr := SetAside(s, n)
		if merr != nil {
			return "", fmt.Errorf("moving damaged checkpoint %s aside: %w", Where(s, n, ""), merr)
		}
		return fmt.Sprintf("damaged checkpoint %s (%v): moved it aside to %s, which herd never reads or deletes; "+
			"look into it, then delete it", n, err, Where(s, aside, "")), nil
	})
}

// latest walks the checkpoints newest first and returns the first that verifies; skip
// handles each one before it that does not and returns the warning for it.
func latest(s Storage, skip func(name string, err error) (string, error)) (name string, warnings []string, err error) {
	names, err := steps(s)
	if err != nil {
		return "", nil, err
	}
	for _, n := range names {
		verr := verify(s, n)
		if verr == nil {
			return n, warnings, nil
		}
		w, err := skip(n, verr)
		if err != nil {
			return "", warnings, err
		}
		warnings = append(warnings, w)
	}
	return "", warnings, ErrNone
}

// damagedPrefix starts the name of a checkpoint set aside as damaged.
const damagedPrefix = ".damaged-"

// SetAside renames checkpoint name to .damaged-<name>-<UTC time>[-N], a name that List
// leaves out, so that it is neither resumed from, nor counted or deleted by Retain, nor
// replaced when its step is saved again. It returns the new name.
func SetAside(s Storage, name string) (string, error) {
	base := damagedPrefix + name + "-" + time.Now().UTC().Format("20060102T150405Z")
	to := base
	for i := 2; ; i++ {
		err := s.Rename(name, to)
		if !errors.Is(err, fs.ErrExist) || i > 100 {
			return to, err
		}
		to = fmt.Sprintf("%s-%d", base, i)
	}
}

// ReadState verifies checkpoint name and returns its state.json: enough to rebuild the
// model it holds (State.Config) before loading the tensors with Load.
func ReadState(s Storage, name string) (State, error) {
	if err := Verify(s, name); err != nil {
		return State{}, err
	}
	st, err := readState(s, name)
	return st, named(err)
}

func readState(s Storage, name string) (State, error) {
	var st State
	err := readFile(s, name, StateFile, func(r io.Reader) error {
		if err := json.NewDecoder(r).Decode(&st); err != nil {
			return err
		}
		if st.Format != Format {
			return fmt.Errorf("format %d, this herd reads format %d", st.Format, Format)
		}
		return nil
	})
	return st, err
}

// readFile opens one file of checkpoint name for fn; any failure is a user error naming
// the file.
func readFile(s Storage, name, file string, fn func(io.Reader) error) error {
	r, err := s.Open(name, file)
	if err != nil {
		return corrupt(s, name, file, "%v", err)
	}
	defer r.Close()
	if err := fn(r); err != nil {
		return corrupt(s, name, file, "%v", err)
	}
	return nil
}

// Load verifies checkpoint name and reads it into snap: snap.State is replaced, and every
// tensor in snap.Model and snap.Optim is filled. The files must hold exactly those tensors
// with those shapes. Errors are user errors naming the file. check, if not nil, sees the
// state before any tensor is written and may refuse the checkpoint by returning an error,
// which Load returns; a refused checkpoint leaves the tensors untouched.
func Load(s Storage, name string, snap *Snapshot, check func(State) error) error {
	if err := Verify(s, name); err != nil {
		return err
	}
	st, err := readState(s, name)
	if err != nil {
		return named(err)
	}
	snap.State = st
	if check != nil {
		if err := check(st); err != nil {
			return err
		}
	}
	if err := readFile(s, name, ModelFile, func(r io.Reader) error {
		_, err := ReadSafetensors(r, snap.Model)
		return err
	}); err != nil {
		return named(err)
	}
	return named(readFile(s, name, OptimFile, func(r io.Reader) error {
		meta, err := ReadSafetensors(r, snap.Optim)
		snap.OptimMeta = meta
		return err
	}))
}

// LoadModel verifies checkpoint name and reads only its weights into tensors, which the
// file must hold exactly (names and shapes): fine-tuning (init.from) starts from a
// checkpoint's weights with a fresh optimizer. Errors are user errors naming the file.
func LoadModel(s Storage, name string, tensors []Tensor) error {
	if err := Verify(s, name); err != nil {
		return err
	}
	return named(readFile(s, name, ModelFile, func(r io.Reader) error {
		_, err := ReadSafetensors(r, tensors)
		return err
	}))
}

// Retain deletes old checkpoints. It keeps the newest keep checkpoints that look whole
// (see whole), every checkpoint newer than the oldest of those, whole or not, and, when
// every > 0, those whose step is a multiple of every; it never deletes written, the
// checkpoint just saved. So a damaged checkpoint is never counted as one of the keep, and
// nothing is deleted until keep whole ones exist. keep <= 0 keeps everything. It returns
// the names deleted.
func Retain(s Storage, keep int, every int64, written string) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	names, err := steps(s)
	if err != nil {
		return nil, err
	}
	var deleted []string
	seen := 0 // whole checkpoints newer than n
	for _, n := range names {
		step, _ := parseName(n)
		if seen < keep {
			if whole(s, n) {
				seen++
			}
			continue
		}
		if n == written || (every > 0 && step%every == 0) {
			continue
		}
		if err := s.Delete(n); err != nil {
			return deleted, fmt.Errorf("retention: deleting checkpoint %s: %w", n, err)
		}
		deleted = append(deleted, n)
	}
	return deleted, nil
}

// whole is Retain's cheap check of checkpoint name: its manifest reads and lists the
// three files, each of the size it records. Checksums are left to Verify, which reads
// every byte, when a checkpoint is loaded.
func whole(s Storage, name string) bool {
	m, err := readManifest(s, name)
	if err != nil {
		return false
	}
	if checkListing(m) != nil {
		return false
	}
	for _, f := range m.Files {
		if n, err := size(s, name, f.Name); err != nil || n != f.Size {
			return false
		}
	}
	return true
}

// size is the size of one file of checkpoint name: from Stat where the storage's reader
// has it (a local file), else by reading it through.
func size(s Storage, name, file string) (int64, error) {
	r, err := s.Open(name, file)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	if st, ok := r.(interface{ Stat() (fs.FileInfo, error) }); ok {
		fi, err := st.Stat()
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	return io.Copy(io.Discard, r)
}
