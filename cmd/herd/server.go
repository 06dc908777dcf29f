package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/dashboard"
	"github.com/herdml/herd/workflows/devserver"
	"github.com/herdml/herd/workflows/temporalui"
)

func newServerCmd() *cobra.Command {
	var (
		opts devserver.Options
		ui   temporalUIFlag
		uf   uiFlags
	)
	c := &cobra.Command{
		Use:   "server",
		Short: "Run herd's embedded Temporal server standalone, for several workers or hosts",
		Long: "Run herd's embedded Temporal server standalone: a real Temporal server persisted in a SQLite\n" +
			"file under the state dir. Workers (`herd worker --temporal ADDR`) and clients (`herd run\n" +
			"--temporal ADDR`, or any Temporal client) connect to it. Ctrl-C stops it.",
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := ui.check(opts.Insecure); err != nil {
				return err
			}
			opts.UI = ui.start
			site, err := uf.listen()
			if err != nil {
				return err
			}
			defer site.close()
			s, err := devserver.Start(opts)
			if err != nil {
				return err
			}
			defer s.Stop()
			out := c.OutOrStdout()
			fmt.Fprintf(out, "Temporal server %s at %s, namespace %s, state in %s\n",
				devserver.ServerVersion, s.Addr(), s.Namespace(), opts.StateDir)
			switch ip := net.ParseIP(opts.IP); {
			case ip.IsLoopback():
				fmt.Fprintf(out, "listening on loopback only: other hosts cannot reach it (--listen IP with --tls-cert, --tls-key, --tls-ca for them)\n")
			case opts.TLS.ClientCAFile == "":
				fmt.Fprintf(c.ErrOrStderr(), "herd: warning: the frontend at %s has no authentication: anyone who reaches it controls every run\n", s.Addr())
			default:
				fmt.Fprintf(out, "listening on %s: clients need a certificate signed by %s\n", opts.IP, opts.TLS.ClientCAFile)
			}
			if u := s.UIURL(); u != "" {
				fmt.Fprintf(out, "Temporal UI at %s\n", u)
				if !loopback(ui.addr) {
					fmt.Fprintf(c.ErrOrStderr(), "herd: warning: the Temporal UI at %s has no authentication: anyone who reaches it controls every run\n", u)
				}
			}
			fmt.Fprintf(out, "workers: herd worker --temporal %s%s\n", s.Addr(), clientTLSHint(opts.TLS))
			if site != nil {
				// After Start, which has checked the certificate and key with their flags.
				auth, err := serverAuth(opts.TLS)
				if err != nil {
					return err
				}
				dc, err := client.Dial(s.Addr(), s.Namespace(), auth)
				if err != nil {
					return err
				}
				defer dc.Close()
				defer site.serve(dc, dashboard.Options{TemporalUI: s.UIURL()}, out)()
			}
			ctx, stop := interruptContext()
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	c.Flags().StringVar(&opts.StateDir, "state-dir", client.StateDir(), "holds temporal.db and server.log (default $HERD_HOME or ~/.herd)")
	c.Flags().StringVar(&opts.IP, "listen", "127.0.0.1", "IP the frontend listens on (0.0.0.0 for other hosts: needs --tls-cert, --tls-key and --tls-ca, or --insecure)")
	c.Flags().BoolVar(&opts.Insecure, "insecure", false, "allow a --listen other than loopback without client certificates, and a --temporal-ui other than loopback: anyone who reaches them can then start, read and terminate every run; refused without this flag so that it is never exposed by accident")
	c.Flags().IntVar(&opts.Port, "port", 7233, "frontend gRPC port")
	c.Flags().StringVar(&opts.TLS.CertFile, "tls-cert", "", "PEM certificate the frontend serves (also presented by the server's own system worker: needs clientAuth usage)")
	c.Flags().StringVar(&opts.TLS.KeyFile, "tls-key", "", "PEM private key of --tls-cert")
	c.Flags().StringVar(&opts.TLS.ClientCAFile, "tls-ca", "", "PEM CA that clients' certificates must chain to: mutual TLS")
	c.Flags().StringVar(&opts.Namespace, "namespace", "default", "namespace registered on first start")
	c.Flags().StringVar(&opts.LogLevel, "log-level", "warn", "server log level in server.log: debug, info, warn, error")
	ui.register(c, temporalui.Default)
	uf.register(c, "the server's runs")
	c.Flags().BoolVar(&opts.Untuned, "untuned", false, "keep Temporal's default dynamic config (slower dispatch; for comparison)")
	return c
}

// clientTLSHint is what a client of a server with t adds to --temporal.
func clientTLSHint(t devserver.TLS) string {
	switch {
	case t.ClientCAFile != "":
		return " --tls-ca CA.pem --tls-cert CLIENT.pem --tls-key CLIENT.key"
	case t.CertFile != "":
		return " --tls-ca CA.pem"
	}
	return ""
}
