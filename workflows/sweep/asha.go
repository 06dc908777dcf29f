package sweep

// Continue is ASHA's rule at one rung: a trial continues when its metric v ranks within
// the best ceil(n/reduction) of the n results recorded at that rung, its own included.
// recorded holds the other trials' results in the order the workflow recorded them; a
// tie counts in the trial's favour. The first trial at a rung always continues, as in
// asynchronous successive halving (Li et al., 2020): a trial is never held back waiting
// for others, so a bad early result can only be outranked later.
func Continue(recorded []float64, v float64, reduction int, minimize bool) bool {
	better := 0
	for _, r := range recorded {
		if (minimize && r < v) || (!minimize && r > v) {
			better++
		}
	}
	n := len(recorded) + 1
	keep := (n + reduction - 1) / reduction
	return better < keep
}

// Better reports whether metric a beats b in the sweep's direction; NaN never does.
func Better(a, b float64, minimize bool) bool {
	if a != a {
		return false
	}
	if b != b {
		return true
	}
	if minimize {
		return a < b
	}
	return a > b
}
