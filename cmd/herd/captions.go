package main

import (
	"fmt"
	"io"
	"sort"

	"github.com/herdml/herd/trainer"
)

// captionSummary is what `herd eval --captions --json` prints.
type captionSummary struct {
	Checkpoint string         `json:"checkpoint"`
	Step       int64          `json:"step"`
	Images     int            `json:"images"`   // image documents decoded
	Correct    int            `json:"correct"`  // greedy decode equal to the reference caption
	Accuracy   float64        `json:"accuracy"` // correct / images
	Classes    []captionClass `json:"classes"`  // per distinct reference caption, in name order
}

type captionClass struct {
	Caption  string  `json:"caption"` // the reference continuation, e.g. "ankle boot"
	Images   int     `json:"images"`
	Correct  int     `json:"correct"`
	Accuracy float64 `json:"accuracy"`
}

// captionScore scores greedy captions against the references: overall and per reference
// (for Fashion-MNIST, per class: a model that ignores the image gets one class right).
func captionScore(ckpt string, step int64, caps []trainer.Caption) captionSummary {
	sum := captionSummary{Checkpoint: ckpt, Step: step, Images: len(caps)}
	byWant := map[string]*captionClass{}
	for _, c := range caps {
		k := byWant[c.Want]
		if k == nil {
			k = &captionClass{Caption: c.Want}
			byWant[c.Want] = k
		}
		k.Images++
		if c.Got == c.Want {
			k.Correct++
			sum.Correct++
		}
	}
	for _, k := range byWant {
		k.Accuracy = float64(k.Correct) / float64(k.Images)
		sum.Classes = append(sum.Classes, *k)
	}
	sort.Slice(sum.Classes, func(i, j int) bool { return sum.Classes[i].Caption < sum.Classes[j].Caption })
	if sum.Images > 0 {
		sum.Accuracy = float64(sum.Correct) / float64(sum.Images)
	}
	return sum
}

func (s captionSummary) print(w io.Writer) {
	fmt.Fprintf(w, "%s (step %d): caption accuracy %.2f%% (%d of %d images)\n", s.Checkpoint, s.Step, 100*s.Accuracy, s.Correct, s.Images)
	for _, k := range s.Classes {
		fmt.Fprintf(w, "  %-20q %6.2f%% of %d\n", k.Caption, 100*k.Accuracy, k.Images)
	}
}
