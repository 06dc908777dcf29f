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

// The transfer experiment's files carry the base values the tuning example found on
// their proxy, in every trial, sp's included: base values are the proxy's, like the LR.
func TestExampleMetaPTransferTunedBaseValues(t *testing.T) {
	for _, file := range []string{"../../examples/metap-transfer.yaml", "../../examples/metap-transfer-depth.yaml"} {
		s, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, tr := range s.Trials {
			if m := trialConfig(t, s, i).MetaP; m.InputMult != 10 || m.ReadoutMult != 4 || m.InitStd != 0.04 {
				t.Fatalf("%s trial %d (%v): input_mult %g, readout_mult %g, init_std %g; want 10, 4, 0.04",
					file, tr.Index, tr.Params, m.InputMult, m.ReadoutMult, m.InitStd)
			}
		}
	}
}
