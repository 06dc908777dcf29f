package sweep

import "testing"

// The base-value tuning example stays valid: 3 input multipliers x 4 readout multipliers
// x 3 init stds x 5 LR octaves on the width-64 proxy under metap, the LR fastest.
func TestExampleMetaPBaseTune(t *testing.T) {
	s, err := Load("../../examples/metap-base-tune.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Trials) != 180 || s.Metric != "eval_loss" || s.TransferSrc == nil {
		t.Fatalf("%d trials, metric %s, transfer %q", len(s.Trials), s.Metric, s.TransferName)
	}
	first, last := trialConfig(t, s, 0), trialConfig(t, s, 179)
	if first.MetaP.InputMult != 1 || first.MetaP.ReadoutMult != 1 || first.MetaP.InitStd != 0.01 || first.Train.Optim.LR != 0.0009765625 {
		t.Fatalf("first trial: %+v lr %g", first.MetaP, first.Train.Optim.LR)
	}
	if last.MetaP.InputMult != 10 || last.MetaP.ReadoutMult != 8 || last.MetaP.InitStd != 0.04 || last.Train.Optim.LR != 0.015625 {
		t.Fatalf("last trial: %+v lr %g", last.MetaP, last.Train.Optim.LR)
	}
	if last.Model.DModel != 64 || last.MetaP.Mode != "metap" || last.Train.Steps != 200 {
		t.Fatalf("last trial: d_model %d, mode %s, %d steps", last.Model.DModel, last.MetaP.Mode, last.Train.Steps)
	}
}
