package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/devserver"
)

func newServerCmd() *cobra.Command {
	var opts devserver.Options
	c := &cobra.Command{
		Use:   "server",
		Short: "Run herd's embedded Temporal server standalone, for several workers or hosts",
		Long: "Run herd's embedded Temporal server standalone: a real Temporal server persisted in a SQLite\n" +
			"file under the state dir. Workers (`herd worker --temporal ADDR`) and clients (`herd run\n" +
			"--temporal ADDR`, or any Temporal client) connect to it. Ctrl-C stops it.",
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := devserver.Start(opts)
			if err != nil {
				return err
			}
			defer s.Stop()
			if ip := net.ParseIP(opts.IP); !ip.IsLoopback() {
				fmt.Fprintf(c.ErrOrStderr(), "herd: warning: the frontend at %s has no authentication: anyone who reaches it controls every run\n", s.Addr())
			}
			fmt.Fprintf(c.OutOrStdout(), "Temporal server %s at %s, namespace %s, state in %s\n",
				devserver.ServerVersion, s.Addr(), s.Namespace(), opts.StateDir)
			fmt.Fprintf(c.OutOrStdout(), "workers: herd worker --temporal %s\n", s.Addr())
			ctx, stop := interruptContext()
			defer stop()
			<-ctx.Done()
			return nil
		},
	}
	c.Flags().StringVar(&opts.StateDir, "state-dir", client.StateDir(), "holds temporal.db and server.log (default $HERD_HOME or ~/.herd)")
	c.Flags().StringVar(&opts.IP, "ip", "127.0.0.1", "interface to listen on (0.0.0.0 for other hosts: needs --insecure)")
	c.Flags().BoolVar(&opts.Insecure, "insecure", false, "allow an --ip other than loopback: the embedded server has no authentication, so anyone who reaches it can start, read and terminate every run; refused without this flag so that it is never exposed by accident")
	c.Flags().IntVar(&opts.Port, "port", 7233, "frontend gRPC port")
	c.Flags().StringVar(&opts.Namespace, "namespace", "default", "namespace registered on first start")
	c.Flags().StringVar(&opts.LogLevel, "log-level", "warn", "server log level in server.log: debug, info, warn, error")
	c.Flags().BoolVar(&opts.Untuned, "untuned", false, "keep Temporal's default dynamic config (slower dispatch; for comparison)")
	return c
}
