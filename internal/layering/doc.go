// Package layering holds the test that keeps herd's imports flowing one way:
//
//	cmd, tools, bench  (programs: the top)
//	  -> workflows     (Temporal workflows, activities, their client and results)
//	  -> trainer       (the model, optimizer, checkpoints, the step loop)
//	  -> kernels, metap, data
//	  -> internal      (the bottom: imports no other herd package outside internal)
//
// A package may import any package of a lower layer, and of its own layer only inside
// its own top-level folder: trainer/model may import kernels and trainer/config, kernels
// never imports trainer, and data never imports kernels. Tests count as their package:
// a test that imported upward would tie the lower layer to the upper one just the same.
//
// And one package alone chooses a backend: nothing but kernels/cpu itself and the
// chooser, kernels/device, imports kernels/cpu, so that the model, optimizer and FP8
// code reach numbers only through kernels.Backend and run unchanged on another backend.
//
// The rule is checked on `go list` of the whole module, so a new package or import that
// breaks it fails `go test ./internal/layering`, which names the import.
package layering
