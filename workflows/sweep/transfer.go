package sweep

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/trainer/config"
)

// transfer reads the target config and checks that it accepts every trial's values.
func (s *Sweep) transfer(t *TransferSection, dir string, loc func(string) string) error {
	if t.Target == "" {
		return usererr.New(loc("transfer.target"), "want the path of the target run config")
	}
	p := t.Target
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	src, err := os.ReadFile(p)
	if err != nil {
		return usererr.New(loc("transfer.target"), "cannot read %s: %v", p, err)
	}
	s.TransferName, s.TransferSrc, s.TransferSets = p, src, t.Set
	if _, err := s.Target(s.Trials[0].Params); err != nil {
		var u *usererr.Error
		if errors.As(err, &u) {
			return usererr.New(loc("transfer.target"), "%s", u.Error())
		}
		return err
	}
	return nil
}

// TargetName is the run name of a sweep's transferred target.
func TargetName(sweep string) string { return sweep + "-target" }

// Target is the transfer target with the best trial's values (best, as "key=value") and
// MetaP's base set to the proxy, so that metap.mode's rules scale the proxy's tuned
// hyperparameters to the target's shape: metap.base takes the base config's width,
// depth, tokens per step and tokens per run. The target's own metap.mode is kept (sp
// applies the values unscaled, which is the comparison the transfer experiment makes).
// It reads nothing, so the Sweep workflow may call it.
func (s *Sweep) Target(best []string) (config.Run, error) {
	return Target(s.TransferName, s.TransferSrc, s.TransferSets, s.Base, TargetName(s.Name), best)
}

// Target is Sweep.Target from its parts, for the workflow, which carries these parts
// rather than the Sweep.
func Target(name string, src []byte, sets []string, proxy config.Run, run string, best []string) (config.Run, error) {
	sh := proxy.MetaPShape()
	base := []string{
		"metap.base.d_model=" + strconv.Itoa(sh.DModel),
		"metap.base.n_layers=" + strconv.Itoa(sh.NLayers),
		"metap.base.batch_tokens=" + strconv.Itoa(sh.BatchTokens),
		"metap.base.train_tokens=" + strconv.FormatFloat(sh.TrainTokens, 'g', -1, 64),
	}
	return config.Parse(name, src, slices.Concat(sets, base, best, []string{"name=" + run}))
}
