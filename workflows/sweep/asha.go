package sweep

// Promote is ASHA's promotion rule (Li et al., "A System for Massively Parallel
// Hyperparameter Tuning", MLSys 2020, Algorithm 2) at one rung, for results that arrive in
// the order given. ASHA promotes a trial when it ranks within the top floor(m/reduction)
// of the m results its rung holds, and it never stops a trial for being behind: a trial
// that is not (yet) in the top waits at the rung, and a later, larger rung may take it.
// So result j is promoted when, for some m from j+1 to len(results), it ranks within the
// top floor(m/reduction) of the first m results. Ranking compares with Better; an equal
// result ranks the earlier one first.
//
// The paper's stream of configurations never ends; a sweep's does. When complete is true
// no further result will arrive: the top max(1, floor(n/reduction)) of the n results are
// promoted (the best always goes on, so a rung holding fewer than reduction results still
// leads to a finished trial), and every result not promoted is final: its trial stops.
func Promote(results []float64, reduction int, minimize, complete bool) []bool {
	out := make([]bool, len(results))
	for j, v := range results {
		ahead := 0 // results among the first m that rank before v
		for i := range j {
			if beats(results[i], v, minimize) {
				ahead++
			}
		}
		for m := j + 1; m <= len(results) && !out[j]; m++ {
			if m > j+1 && Better(results[m-1], v, minimize) {
				ahead++
			}
			out[j] = ahead < m/reduction
		}
		if complete && !out[j] {
			out[j] = ahead < max(1, len(results)/reduction)
		}
	}
	return out
}

// beats reports whether an earlier result r ranks before a later v: better, or equal.
func beats(r, v float64, minimize bool) bool {
	return Better(r, v, minimize) || r == v
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
