package main

import (
	"net"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/workflows/devserver"
)

// temporalUIFlag is --temporal-ui: where a command that serves the embedded Temporal
// server serves the Temporal Web UI beside it.
type temporalUIFlag struct {
	cmd  *cobra.Command
	addr string
}

func (f *temporalUIFlag) register(c *cobra.Command) {
	f.cmd = c
	c.Flags().StringVar(&f.addr, "temporal-ui", devserver.DefaultUI, "IP:PORT of the Temporal Web UI beside the embedded server this process starts (a free port if the default is taken; "+
		"off for none; beyond loopback only with herd server --insecure: the UI has no authentication)")
}

// value is the UI's address, "" for off or where the command has no such flag, and
// whether it may move to a free port: the default does when another UI
// (`temporal server start-dev`'s, another herd's) holds it, an address given does not.
func (f *temporalUIFlag) value() (addr string, anyPort bool) {
	if f.cmd == nil || f.addr == "off" {
		return "", false
	}
	return f.addr, !f.cmd.Flags().Changed("temporal-ui")
}

// loopback reports whether addr, an IP:PORT, is on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && net.ParseIP(host).IsLoopback()
}
