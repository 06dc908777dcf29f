// Package temporalui serves the Temporal Web UI beside herd's embedded Temporal server:
// devserver.Start calls the hook Hook returns once its frontend is up.
//
// The UI is served from github.com/temporalio/ui-server/v2, the module (Go server and
// built assets embedded) that the Temporal CLI serves in `temporal server start-dev`,
// configured as the CLI configures it. Its version (go.mod) is the one the CLI releases on
// Temporal server v1.30 embed; later ones need a newer go.temporal.io/api than the server
// herd embeds builds with. Its assets are about 250 MB of every binary that links this
// package, which is why it is a package of its own: devserver, the client and their tests
// stay without it, and only the herd binary and this package's test carry it.
//
// It has no authentication of its own and calls the frontend with the server's own
// credentials, so whoever reaches it can read, signal and terminate every run: it listens
// on loopback unless the caller says it accepts that (insecure).
package temporalui

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/server/common/config"

	"github.com/herdml/herd/internal/usererr"
	"github.com/herdml/herd/workflows/devserver"
)

// Default is where the Temporal CLI's dev server serves its UI, and `herd server`'s by
// default.
const Default = "127.0.0.1:8233"

// startTimeout bounds the wait for the UI's listener after its server is started.
const startTimeout = 30 * time.Second

// Check checks addr, an IP:PORT for the UI (port 0: a free one), and returns the address
// to serve on: one beyond loopback is a user error unless insecure, and a port in use is
// one unless anyPort, which takes a free port on the same IP instead.
//
// The UI server takes no listener: it binds its port itself and exits the whole process
// when it cannot. So a port in use must be found here, before it tries, and twice: by the
// caller before anything starts (for the user error, with nothing yet written), and by
// Hook's server just before the UI binds, which leaves only a port taken in that instant
// to end the process.
func Check(addr string, insecure, anyPort bool) (string, error) {
	where := "--temporal-ui " + addr
	host, port, err := net.SplitHostPort(addr)
	p, perr := strconv.Atoi(port)
	ip := net.ParseIP(host)
	if err != nil || perr != nil || p < 0 || p > 65535 || ip == nil {
		return "", usererr.New(where, "not IP:PORT; give one such as %s, or off for no UI", Default)
	}
	if !ip.IsLoopback() && !insecure {
		return "", usererr.New(where, "not loopback, and the Temporal Web UI has no authentication: anyone who reaches it can read, "+
			"signal and terminate every run through it; use a loopback address such as %s, or `herd server --insecure` on a network you trust", Default)
	}
	if p != 0 {
		l, err := net.Listen("tcp", addr)
		switch {
		case err == nil:
			_ = l.Close()
			return addr, nil
		case !errors.Is(err, syscall.EADDRINUSE):
			return "", usererr.New(where, "cannot listen: %v", err)
		case !anyPort:
			return "", usererr.New(where, "in use (another Temporal UI, such as `temporal server start-dev`'s?); give another port, or off for no UI")
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("temporalui: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Hook is the devserver.Options.UI that serves the UI on addr, as Check takes it, against
// the server started: Check again, then Start.
func Hook(addr string, insecure, anyPort bool) devserver.StartUI {
	return func(frontend, namespace string, worker config.WorkerTLS) (devserver.UIServer, error) {
		at, err := Check(addr, insecure, anyPort)
		if err != nil {
			return nil, err
		}
		s, err := Start(at, frontend, namespace, worker)
		if err != nil {
			return nil, err // not s: a nil *Server in the interface would not be nil
		}
		return s, nil
	}
}

// Server is a running Temporal Web UI.
type Server struct {
	ui   *uiserver.Server
	addr string
}

// Start serves the Temporal Web UI on addr (checked by Check) against the frontend, and
// returns once it accepts connections. With TLS on the frontend it presents what the
// server's own system worker presents (worker) and checks the frontend's certificate as
// that worker does.
func Start(addr, frontend, namespace string, worker config.WorkerTLS) (*Server, error) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	conf := &uiconfig.Config{
		Host:                host,
		Port:                p,
		TemporalGRPCAddress: dialable(frontend),
		DefaultNamespace:    namespace,
		EnableUI:            true,
		// Plain HTTP: the CSRF cookie must be sent without TLS, as in the Temporal CLI.
		CORS:     uiconfig.CORS{CookieInsecure: true},
		HideLogs: true,
	}
	if worker.CertFile != "" {
		conf.TLS = uiconfig.TLS{
			CertFile:               worker.CertFile,
			KeyFile:                worker.KeyFile,
			CaFile:                 worker.Client.RootCAFiles[0],
			ServerName:             worker.Client.ServerName,
			EnableHostVerification: true, // the UI server skips verification unless told
		}
	}
	ui := uiserver.NewServer(uioptions.WithConfigProvider(conf))
	// Start blocks while it serves; it returns an error only for a config it cannot read,
	// which this one is not, and exits the process where it cannot listen (see Check).
	go func() { _ = ui.Start() }()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return &Server{ui: ui, addr: addr}, nil
		}
		if time.Now().After(deadline) {
			ui.Stop()
			return nil, fmt.Errorf("temporalui: the Temporal UI on %s does not accept connections: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the UI's address, http://IP:PORT.
func (s *Server) URL() string { return "http://" + s.addr }

// Stop stops the UI server.
func (s *Server) Stop() { s.ui.Stop() }

// dialable is a frontend address that a client on this host can dial: a frontend bound to
// every interface (0.0.0.0 or ::) is reached over loopback.
func dialable(frontend string) string {
	host, port, err := net.SplitHostPort(frontend)
	if err != nil || !net.ParseIP(host).IsUnspecified() {
		return frontend
	}
	return net.JoinHostPort("127.0.0.1", port)
}
