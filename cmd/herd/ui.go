package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/spf13/cobra"
	sdkclient "go.temporal.io/sdk/client"

	"github.com/herdml/herd/internal/ui"
	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows/client"
	"github.com/herdml/herd/workflows/dashboard"
	"github.com/herdml/herd/workflows/devserver"
)

// defaultUIAddr is where the dashboard listens unless --ui says otherwise: loopback, so
// that only this machine's users see the runs and their controls.
const defaultUIAddr = "127.0.0.1:8234"

// envUIToken is the variable --ui-token falls back to (better than the flag, which ps
// shows).
const envUIToken = "HERD_UI_TOKEN"

// uiFlags are --ui and --ui-token: where the web dashboard listens and the token it
// requires (docs/dashboard.md).
type uiFlags struct {
	cmd         *cobra.Command
	addr, token string
}

func (f *uiFlags) register(c *cobra.Command, what string) {
	f.cmd = c
	c.Flags().StringVar(&f.addr, "ui", defaultUIAddr, "address of the web dashboard of "+what+` ("off": none); a port taken at the default moves to a free one; any address other than loopback requires a token`)
	c.Flags().StringVar(&f.token, "ui-token", "", "token the dashboard requires on every API request (default $"+envUIToken+"; generated and printed when --ui is not loopback)")
}

// dashboardSite is an open dashboard listener and the rule it serves under.
type dashboardSite struct {
	ln   net.Listener
	opts ui.Options
}

// listen opens the dashboard's listener, before anything starts, so that a bad --ui is a
// user error that changes nothing; nil with --ui off. At the default address, a port
// already taken (another herd serving its dashboard) moves to a free loopback port.
func (f *uiFlags) listen() (*dashboardSite, error) {
	if f.addr == "off" {
		return nil, nil
	}
	token := f.token
	if !f.cmd.Flags().Changed("ui-token") {
		token = os.Getenv(envUIToken)
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil && !f.cmd.Flags().Changed("ui") {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		return nil, usererr.New("--ui "+f.addr, "the dashboard cannot listen there: %v; give another host:port, or --ui off", err)
	}
	opts := ui.Options{Token: token, Loopback: ui.Loopback(ln.Addr().String())}
	if !opts.Loopback && opts.Token == "" {
		opts.Token = ui.NewToken()
	}
	return &dashboardSite{ln: ln, opts: opts}, nil
}

// serve serves the dashboard over c on s and says where on w; stop ends it. A nil s
// (--ui off) serves nothing.
func (s *dashboardSite) serve(c sdkclient.Client, o dashboard.Options, w io.Writer) (stop func()) {
	if s == nil {
		return func() {}
	}
	srv := ui.NewServer(ui.Handler(dashboard.New(c, o), s.opts))
	go func() {
		if err := srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "herd: the dashboard stopped: %v\n", err)
		}
	}()
	url := "http://" + s.ln.Addr().String() + "/"
	if s.opts.Token != "" && !s.opts.Loopback {
		url += "?token=" + s.opts.Token
	}
	fmt.Fprintf(w, "dashboard at %s\n", url)
	return func() { _ = srv.Close() }
}

// dashboardOf opens the dashboard's listener of `herd run` and `herd sweep` when they
// would start the embedded server: nil otherwise (the process that serves the server,
// or the user's cluster, serves its own).
func dashboardOf(tf *temporalFlags, uf *uiFlags) (*dashboardSite, error) {
	if !tf.target().Embedded() {
		return nil, nil
	}
	return uf.listen()
}

// serveIf serves the dashboard when conn is the embedded server of this process, and
// else releases the listener; the function it returns stops what it started.
func (s *dashboardSite) serveIf(conn *client.Conn, w io.Writer) (stop func()) {
	if !conn.InProcess() {
		s.close()
		return func() {}
	}
	return s.serve(conn.Client, dashboard.Options{TemporalUI: conn.UIURL()}, w)
}

// close releases a listener that will not be served (the command did not start the
// embedded server after all).
func (s *dashboardSite) close() {
	if s != nil {
		_ = s.ln.Close()
	}
}

func newUICmd() *cobra.Command {
	var (
		tf    temporalFlags
		uf    uiFlags
		webUI string
	)
	c := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web dashboard of the runs and sweeps on a Temporal server",
		Long: "Serve the web dashboard (docs/dashboard.md) for the runs and sweeps of any Temporal server:\n" +
			"--temporal ADDR with the TLS or API-key flags of a production cluster, else the herd process\n" +
			"serving the state dir, else the embedded server, started here. `herd server`, and `herd run`\n" +
			"and `herd sweep` on the embedded server, serve it themselves. Ctrl-C stops it.",
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			site, err := uf.listen()
			if err != nil {
				return err
			}
			if site == nil {
				return usererr.New("--ui off", "herd ui only serves the dashboard: give it an address")
			}
			defer site.close()
			conn, done, err := tf.connect(nil)
			if err != nil {
				return err
			}
			defer done()
			stop := site.serve(conn.Client, dashboard.Options{TemporalUI: webUI}, c.OutOrStdout())
			defer stop()
			ctx, cancel := interruptContext()
			defer cancel()
			<-ctx.Done()
			return nil
		},
	}
	tf.register(c)
	uf.register(c, "the runs")
	c.Flags().StringVar(&webUI, "temporal-ui-url", "", "address of the Temporal Web UI of the same server, linked from the dashboard")
	return c
}

// serverAuth is how `herd server`'s own dashboard dials its frontend: as its system
// worker does (devserver), presenting the server's certificate and trusting exactly it
// under the first name on it; plain gRPC when the server has no certificate.
func serverAuth(t devserver.TLS) (client.Auth, error) {
	if t.CertFile == "" {
		return client.Auth{}, nil
	}
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return client.Auth{}, usererr.New("--tls-cert "+t.CertFile+", --tls-key "+t.KeyFile, "not a usable PEM certificate and key: %v", err)
	}
	name := ""
	if leaf := pair.Leaf; len(leaf.DNSNames) > 0 {
		name = leaf.DNSNames[0]
	} else if len(leaf.IPAddresses) > 0 {
		name = leaf.IPAddresses[0].String()
	}
	cert := client.File{Path: t.CertFile, From: "--tls-cert"}
	return client.Auth{Cert: cert, Key: client.File{Path: t.KeyFile, From: "--tls-key"}, CA: cert, ServerName: name}, nil
}
