//go:build !unix

package data

import "os"

// mapFile reads the whole file where memory mapping is not available.
func mapFile(name string) ([]byte, error) { return os.ReadFile(name) }

func unmapFile([]byte) {}
