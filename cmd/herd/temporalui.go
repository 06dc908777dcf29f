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
	c.Flags().StringVar(&f.addr, "temporal-ui", devserver.DefaultUI, "IP:PORT of the Temporal Web UI beside the embedded server (a free port if the default is taken; off for none; "+
		"beyond loopback needs --insecure: the UI has no authentication)")
}

// apply sets o's UI: none for off; the default address moves to a free port when another
// UI (`temporal server start-dev`'s, another herd's) holds it, an address given does not.
func (f *temporalUIFlag) apply(o *devserver.Options) {
	o.UI, o.UIAnyPort = f.addr, !f.cmd.Flags().Changed("temporal-ui")
	if f.addr == "off" {
		o.UI = ""
	}
}

// loopback reports whether addr, an IP:PORT, is on loopback.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && net.ParseIP(host).IsLoopback()
}
