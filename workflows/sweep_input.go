package workflows

import "github.com/herdml/herd/workflows/sweep"

// NewSweepInput turns a validated sweep file into the workflow's input.
func NewSweepInput(s *sweep.Sweep) SweepInput {
	in := SweepInput{
		Name: s.Name, Base: &s.Source, Metric: s.Metric, Minimize: s.Minimize,
		MaxConcurrent: s.MaxConcurrent, Rungs: s.Rungs, Reduction: s.Reduction, Grace: s.Grace,
	}
	for _, t := range s.Trials {
		in.Trials = append(in.Trials, SweepTrial{Trial: t})
	}
	if s.TransferSrc != nil {
		in.Transfer = &TransferInput{File: s.TransferName, Src: s.TransferSrc, Sets: s.TransferSets, Proxy: s.Base}
	}
	return in
}
