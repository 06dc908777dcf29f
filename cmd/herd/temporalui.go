package main

import (
	"net"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/workflows/devserver"
	"github.com/herdml/herd/workflows/temporalui"
)

// temporalUIFlag is --temporal-ui: where a command that serves the embedded Temporal
// server serves the Temporal Web UI beside it. `herd server` serves it by default
// (temporalui.Default); `herd run` and `herd sweep` only at an address given, because the
// UI server exits the whole process when another process takes its port between the check
// and the bind, and parallel runs start at the same instant.
type temporalUIFlag struct {
	cmd  *cobra.Command
	addr string
	// start is the UI's hook for the embedded server, set by check; nil serves none.
	start devserver.StartUI
}

// register adds the flag to c, defaulting to def (temporalui.Default, or "off").
func (f *temporalUIFlag) register(c *cobra.Command, def string) {
	f.cmd = c
	usage := "IP:PORT of the Temporal Web UI beside the embedded server this process starts, or off for none " +
		"(beyond loopback only with herd server --insecure: the UI has no authentication)"
	if def != "off" {
		usage += "; the default moves to a free port when taken"
	}
	c.Flags().StringVar(&f.addr, "temporal-ui", def, usage)
}

// check checks the address before anything starts (a user error naming it) and sets the
// hook that serves the UI there. The default address may move to a free port when another
// UI (`temporal server start-dev`'s, another herd's) holds it; an address given may not.
// insecure allows one beyond loopback.
func (f *temporalUIFlag) check(insecure bool) error {
	f.start = nil
	if f.cmd == nil || f.addr == "off" {
		return nil
	}
	anyPort := !f.cmd.Flags().Changed("temporal-ui")
	if _, err := temporalui.Check(f.addr, insecure, anyPort); err != nil {
		return err
	}
	f.start = temporalui.Hook(f.addr, insecure, anyPort)
	return nil
}

// loopback reports whether addr, an IP:PORT, is on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && net.ParseIP(host).IsLoopback()
}
