// Package devserver is herd's embedded Temporal server: a real Temporal server (frontend,
// history, matching and worker services) running inside the herd process, persisted in a
// SQLite file under the state directory. `herd run` starts one when no --temporal address is
// given, and `herd server` runs one standalone for several workers.
//
// It is built the way the Temporal CLI's dev server is (SQL persistence with the sqlite
// plugin, schema set up on first start, one history shard, namespaces registered straight
// into the store, static hosts), with two differences that matter for training runs: the
// dynamic config is tuned for low dispatch latency (see Tuning), and the database is
// stamped with the server version, because the SQLite store has no schema migrations
// between server versions and a mismatched file would fail in obscure ways later.
//
// It listens on loopback unless told otherwise, and then only its frontend leaves
// loopback, served over mutual TLS (Options.TLS) or, where the caller accepts that anyone
// who reaches it controls every run, without (Options.Insecure). Beside it, on request,
// it starts a Temporal Web UI (Options.UI; package temporalui serves one).
package devserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/headers"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/log/tag"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/common/primitives/timestamp"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"

	"github.com/herdml/herd/internal/usererr"
)

// ServerVersion is the Temporal server version compiled into herd; the database is stamped
// with it.
var ServerVersion = headers.ServerVersion

// File names inside the state directory.
const (
	DBFile   = "temporal.db" // the SQLite store
	LogFile  = "server.log"  // the server's own log (warnings and errors)
	lockFile = "server.lock" // held by the process serving the state directory
	addrFile = "server.addr" // frontend address of that process, for other herd commands
)

// SearchAttributes are registered on the namespace so that runs can be listed and filtered
// by any Temporal client (`temporal workflow list --query 'HerdState="failed"'`).
var SearchAttributes = map[string]enumspb.IndexedValueType{
	"HerdState": enumspb.INDEXED_VALUE_TYPE_KEYWORD, // running | paused | failed | completed | stopped
	"HerdStep":  enumspb.INDEXED_VALUE_TYPE_INT,     // last committed step
}

// Options configure the embedded server. The zero value plus a StateDir is usable.
type Options struct {
	StateDir string // holds temporal.db, server.log; created if missing
	IP       string // interface the frontend binds; default 127.0.0.1
	// Insecure allows an IP other than loopback without mutual TLS. Without client
	// certificates the server has no authentication: whoever reaches the frontend can
	// start, read, signal and terminate every workflow, so Start refuses such an IP unless
	// TLS with a ClientCAFile authenticates every client or the caller says it knows.
	Insecure  bool
	TLS       TLS    // the frontend's TLS; the zero value serves plain gRPC
	Port      int    // frontend gRPC port; 0 picks a free port
	Namespace string // registered on first start; default "default"
	// Untuned leaves Temporal's default dynamic config, for measuring what Tuning buys.
	Untuned bool
	// DynamicConfig overrides single dynamic config keys, after Tuning.
	DynamicConfig map[string]any
	// InMemory keeps the store in memory instead of StateDir/temporal.db (benchmarks only).
	InMemory bool
	// LogLevel of the server log file: debug | info | warn | error; default warn.
	LogLevel string
	// UI, if set, starts the Temporal Web UI once the frontend accepts calls; Stop stops
	// it. A hook rather than the UI itself: the UI's assets are hundreds of megabytes of
	// every binary that links them, which only the herd binary needs (temporalui.Hook).
	UI StartUI
}

// StartUI starts a Temporal Web UI against the frontend (host:port) and namespace of a
// server just started, presenting, where the frontend has TLS, what the server's own
// system worker presents; it returns once the UI is served. An error ends Start.
type StartUI func(frontend, namespace string, worker config.WorkerTLS) (UIServer, error)

// UIServer is a running Temporal Web UI.
type UIServer interface {
	URL() string // http://IP:PORT
	Stop()
}

// TLS is the frontend's TLS: its certificate, and the CA its clients' certificates must
// chain to (mutual TLS). The server's own system worker dials the frontend too: it
// presents CertFile, which must therefore also be valid for client authentication
// (extended key usage clientAuth) and chain to ClientCAFile.
type TLS struct {
	CertFile, KeyFile string // PEM; both or neither
	ClientCAFile      string // PEM; empty serves TLS without asking clients for a certificate
}

func (t TLS) enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.ClientCAFile != "" }

// Tuning is the dynamic config applied unless Options.Untuned is set.
//
// Two defaults make every dispatch slow on a one-host server. Temporal's queue processors
// read their pending tasks at most MaxPollRPS times a second (20 by default), so an
// activity or workflow task waits for the next poll; and each task queue has 4 partitions,
// so a task written to one partition waits to be forwarded to the partition a poller
// happens to sit on. Together they make a no-op activity round trip several times slower
// than with the tuning below (BenchmarkDispatch: `go test ./workflows/devserver -run '^$'
// -bench Dispatch`). A training segment
// is minutes long, so this is not about throughput: pause, stop and retries react at once
// and an orchestrated run costs nothing measurable over `herd train`.
var Tuning = map[string]any{
	"history.transferProcessorMaxPollRPS":       1000,
	"history.transferProcessorMaxPollHostRPS":   1000,
	"history.timerProcessorMaxPollRPS":          1000,
	"history.timerProcessorMaxPollHostRPS":      1000,
	"history.visibilityProcessorMaxPollRPS":     1000,
	"history.visibilityProcessorMaxPollHostRPS": 1000,
	"history.outboundProcessorMaxPollRPS":       1000,
	"history.outboundProcessorMaxPollHostRPS":   1000,
	"matching.numTaskqueueReadPartitions":       1,
	"matching.numTaskqueueWritePartitions":      1,
	// Registered search attributes are visible at once, as in the Temporal CLI dev server;
	// the persistence limits are raised to pay for the cache being bypassed.
	"system.forceSearchAttributesCacheRefreshOnRead": true,
	"frontend.persistenceMaxQPS":                     10000,
	"history.persistenceMaxQPS":                      45000,
}

// Server is a running embedded Temporal server.
type Server struct {
	srv  temporal.Server
	addr string
	ns   string
	lock *os.File
	dir  string
	ui   UIServer // the Temporal Web UI, if Options.UI started one
}

// BusyError says another process already serves the state directory; Addr is its frontend,
// so a caller can connect to it instead of starting a second server on the same file.
type BusyError struct {
	StateDir string
	Addr     string
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("state dir %s is served by another herd process at %s", e.StateDir, e.Addr)
}

// Start starts a server and returns once its frontend accepts calls.
func Start(opts Options) (*Server, error) {
	if opts.StateDir == "" {
		return nil, errors.New("devserver: no state dir")
	}
	if opts.IP == "" {
		opts.IP = "127.0.0.1"
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if err := checkIP(opts.IP, opts.Insecure || opts.TLS.ClientCAFile != ""); err != nil {
		return nil, err
	}
	rootTLS, err := opts.TLS.root()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, usererr.New(opts.StateDir, "cannot create the state dir: %v; pass --state-dir or set HERD_HOME to a writable folder", err)
	}
	lock, err := lockStateDir(opts.StateDir)
	if err != nil {
		return nil, err
	}
	s, err := start(opts, rootTLS)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	s.lock = lock
	if opts.UI != nil {
		if s.ui, err = opts.UI(s.addr, s.ns, rootTLS.SystemWorker); err != nil {
			s.Stop()
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(opts.StateDir, addrFile), []byte(s.addr+"\n"), 0o644); err != nil {
		s.Stop()
		return nil, fmt.Errorf("devserver: %w", err)
	}
	return s, nil
}

func start(opts Options, rootTLS config.RootTLS) (*Server, error) {
	// Only the frontend (gRPC and HTTP) listens on opts.IP: the history, matching and
	// worker services have no TLS and no authentication, so they stay on loopback.
	internal := opts.IP
	if !net.ParseIP(opts.IP).IsLoopback() {
		internal = "127.0.0.1"
	}
	ports, err := freePorts(internal, 5)
	if err != nil {
		return nil, err
	}
	if opts.Port == 0 {
		opts.Port = ports[4]
	}
	// The server exits the process when it cannot bind a port (see causeLogger): check
	// them all first, so that a port in use is a message.
	for _, p := range []struct {
		ip   string
		port int
	}{{opts.IP, ports[0]}, {internal, ports[1]}, {internal, ports[2]}, {internal, ports[3]}, {opts.IP, opts.Port}} {
		if err := checkPort(p.ip, p.port); err != nil {
			return nil, err
		}
	}
	frontend := net.JoinHostPort(opts.IP, strconv.Itoa(opts.Port))

	sqlConf, clusterID, err := openStore(opts)
	if err != nil {
		return nil, err
	}

	conf := &config.Config{}
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = internal
	conf.Global.TLS = rootTLS
	conf.Persistence.DefaultStore = "sqlite"
	conf.Persistence.VisibilityStore = "sqlite"
	conf.Persistence.NumHistoryShards = 1 // one process, one shard: no cross-shard work
	conf.Persistence.DataStores = map[string]config.DataStore{"sqlite": {SQL: sqlConf}}
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        "active",
		CurrentClusterName:       "active",
		ClusterInformation: map[string]cluster.ClusterInformation{
			"active": {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontend,
				HTTPAddress:            net.JoinHostPort(opts.IP, strconv.Itoa(ports[0])),
				ClusterID:              clusterID,
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	service := func(ip string, grpc, http int) config.Service {
		var s config.Service
		s.RPC.GRPCPort, s.RPC.HTTPPort, s.RPC.BindOnIP = grpc, http, ip
		return s
	}
	conf.Services = map[string]config.Service{
		"frontend": service(opts.IP, opts.Port, ports[0]),
		"history":  service(internal, ports[1], 0),
		"matching": service(internal, ports[2], 0),
		"worker":   service(internal, ports[3], 0),
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontend

	hosts := map[primitives.ServiceName]static.Hosts{}
	for name, addr := range map[primitives.ServiceName]string{
		primitives.FrontendService: frontend,
		primitives.HistoryService:  net.JoinHostPort(internal, strconv.Itoa(ports[1])),
		primitives.MatchingService: net.JoinHostPort(internal, strconv.Itoa(ports[2])),
		primitives.WorkerService:   net.JoinHostPort(internal, strconv.Itoa(ports[3])),
	} {
		hosts[name] = static.SingleLocalHost(addr)
	}

	dyn := dynamicconfig.StaticClient{}
	if !opts.Untuned {
		for k, v := range Tuning {
			dyn[dynamicconfig.MakeKey(k)] = v
		}
	}
	for k, v := range opts.DynamicConfig {
		dyn[dynamicconfig.MakeKey(k)] = v
	}

	logFile := filepath.Join(opts.StateDir, LogFile)
	logger := &causeLogger{Logger: log.NewZapLogger(log.BuildZapLogger(log.Config{
		Level:      opts.LogLevel,
		OutputFile: logFile,
		Format:     "console",
	})), file: logFile}
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return nil, fmt.Errorf("devserver: building the Temporal server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("devserver: starting the Temporal server: %w%s (log: %s)", err, logger.cause(), logFile)
	}
	return &Server{srv: srv, addr: frontend, ns: opts.Namespace, dir: opts.StateDir}, nil
}

// Addr is the frontend's host:port, for Temporal clients and workers.
func (s *Server) Addr() string { return s.addr }

// Namespace is the namespace registered for herd's workflows.
func (s *Server) Namespace() string { return s.ns }

// UIURL is the Temporal Web UI's address, http://IP:PORT, or "" when none is served.
func (s *Server) UIURL() string {
	if s.ui == nil {
		return ""
	}
	return s.ui.URL()
}

// Stop stops the UI, the server, and releases the state directory.
func (s *Server) Stop() {
	if s.ui != nil {
		s.ui.Stop()
	}
	_ = s.srv.Stop()
	_ = os.Remove(filepath.Join(s.dir, addrFile))
	_ = s.lock.Close()
}

// RunningAddr returns the frontend address of the herd process serving stateDir, or "" if
// none does. Commands such as `herd ls` use it to talk to a running `herd run` or
// `herd server` instead of starting their own.
func RunningAddr(stateDir string) string {
	f, err := os.OpenFile(filepath.Join(stateDir, lockFile), os.O_RDWR, 0)
	if err != nil {
		return ""
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		// Nobody holds it: a stale address file from a killed process.
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return ""
	}
	b, err := os.ReadFile(filepath.Join(stateDir, addrFile))
	if err != nil {
		return ""
	}
	return string(trimNewline(b))
}

// lockStateDir takes an exclusive advisory lock so that two processes never run servers on
// one SQLite file. The kernel drops the lock when the process dies, even by SIGKILL.
func lockStateDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devserver: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		addr, _ := os.ReadFile(filepath.Join(dir, addrFile))
		return nil, &BusyError{StateDir: dir, Addr: string(trimNewline(addr))}
	}
	return f, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// openStore prepares the SQL config: on first start it creates the schema, stamps the file
// and registers the namespace; later it checks the stamp. It returns the cluster ID kept
// in the stamp, so that the cluster keeps one identity across restarts.
func openStore(opts Options) (*config.SQL, string, error) {
	conf := &config.SQL{PluginName: sqliteplugin.PluginName}
	if opts.InMemory {
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		conf.DatabaseName = "herd-" + uuid.NewString()
	} else {
		conf.DatabaseName = filepath.Join(opts.StateDir, DBFile)
		conf.ConnectAttributes = map[string]string{
			"mode": "rwc",
			// WAL: a commit appends to the log instead of rewriting pages, so writes are
			// cheaper and readers do not block the writer. synchronous=NORMAL keeps every
			// commit across a crash of the process (SIGKILL); only an OS crash or power
			// loss may drop the last commits.
			"journal_mode": "wal",
			"synchronous":  "normal",
			"busy_timeout": "10000",
		}
	}
	var clusterID string
	if opts.InMemory {
		clusterID = uuid.NewString()
	} else {
		var err error
		if clusterID, err = checkStamp(conf); err != nil {
			return nil, "", err
		}
	}
	if clusterID == "" { // a new store
		if err := sqliteschema.SetupSchema(conf); err != nil {
			return nil, "", fmt.Errorf("devserver: setting up the schema in %s: %w", conf.DatabaseName, err)
		}
		clusterID = uuid.NewString()
		if !opts.InMemory {
			if err := writeStamp(conf.DatabaseName, clusterID); err != nil {
				return nil, "", err
			}
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig("active", opts.Namespace, false, SearchAttributes)
	if err != nil {
		return nil, "", fmt.Errorf("devserver: %w", err)
	}
	// Closed runs stay listable for a month (Temporal's default is one day).
	ns.Detail.Config.Retention = timestamp.DurationFromHours(30 * 24)
	if err := sqliteschema.CreateNamespaces(conf, ns); err != nil {
		return nil, "", fmt.Errorf("devserver: registering namespace %q: %w", opts.Namespace, err)
	}
	return conf, clusterID, nil
}

// The stamp is a table of its own in the Temporal database, so it travels with the file.
const (
	stampTable  = "herd_stamp"
	stampCreate = `CREATE TABLE ` + stampTable + ` (server_version TEXT NOT NULL, cluster_id TEXT NOT NULL, created TEXT NOT NULL)`
)

// checkStamp returns the stored cluster ID, "" for a file that does not exist yet, or a
// user error for a file written by another server version or not by herd at all.
func checkStamp(conf *config.SQL) (string, error) {
	path := conf.DatabaseName
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	// The driver "sqlite" is modernc.org/sqlite, registered by the Temporal sqlite plugin.
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw")
	if err != nil {
		return "", fmt.Errorf("devserver: opening %s: %w", path, err)
	}
	defer db.Close()
	var version, clusterID string
	err = db.QueryRowContext(context.Background(), `SELECT server_version, cluster_id FROM `+stampTable).Scan(&version, &clusterID)
	if err != nil {
		return "", usererr.New(path, "not a herd Temporal store (no version stamp: %v); move it away or pick another --state-dir", err)
	}
	if version != ServerVersion {
		return "", usererr.New(path,
			"written by Temporal server %s but this herd embeds %s, and the SQLite store has no migrations between versions; "+
				"finish its runs with the herd release that created it, or move the file away to start afresh (its run history is lost, checkpoints are not)",
			version, ServerVersion)
	}
	return clusterID, nil
}

func writeStamp(path, clusterID string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=rw")
	if err != nil {
		return fmt.Errorf("devserver: opening %s: %w", path, err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, stampCreate); err != nil {
		return fmt.Errorf("devserver: stamping %s: %w", path, err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO `+stampTable+` VALUES (?, ?, ?)`,
		ServerVersion, clusterID, time.Now().UTC().Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("devserver: stamping %s: %w", path, err)
	}
	return nil
}

// checkIP refuses an interface that is not an IP address (the server would exit the process
// on it) and, unless insecure (or authenticated by mutual TLS), one other than loopback.
func checkIP(ip string, insecure bool) error {
	addr := net.ParseIP(ip)
	if addr == nil {
		return usererr.New("--listen "+ip, "not an IP address; give one such as 127.0.0.1")
	}
	if !addr.IsLoopback() && !insecure {
		return usererr.New("--listen "+ip,
			"not loopback, and without client certificates the embedded Temporal server has no authentication: anyone who reaches it "+
				"can start, read and terminate every run; give --tls-cert, --tls-key and --tls-ca (mutual TLS), "+
				"pass --insecure on a network you trust, or use loopback (the default)")
	}
	return nil
}

// root validates t and builds the server's TLS config from it: the frontend serves t's
// certificate, and with a ClientCAFile requires client certificates that chain to it. The
// system worker, which dials the frontend, presents the same certificate and trusts
// exactly that one, under the first name on it: the frontend may listen on 0.0.0.0,
// which no certificate names. A missing or unusable file is a user error naming the flag
// of `herd server` that gave it.
func (t TLS) root() (config.RootTLS, error) {
	var root config.RootTLS
	if !t.enabled() {
		return root, nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		return root, usererr.New("--tls-cert/--tls-key", "the server's certificate needs its key: give both, and --tls-ca to require client certificates")
	}
	pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return root, usererr.New("--tls-cert "+t.CertFile+", --tls-key "+t.KeyFile, "not a usable PEM certificate and key: %v", err)
	}
	name := ""
	if leaf := pair.Leaf; len(leaf.DNSNames) > 0 {
		name = leaf.DNSNames[0]
	} else if len(leaf.IPAddresses) > 0 {
		name = leaf.IPAddresses[0].String()
	}
	if name == "" {
		return root, usererr.New("--tls-cert "+t.CertFile, "names no host (no DNS or IP subject alternative name), so no client can check it; "+
			"issue it for the names and addresses clients dial")
	}
	root.Frontend.Server = config.ServerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return root, usererr.New("--tls-ca "+t.ClientCAFile, "cannot read it: %v", err)
		}
		cas := x509.NewCertPool()
		if !cas.AppendCertsFromPEM(pem) {
			return root, usererr.New("--tls-ca "+t.ClientCAFile, "no PEM certificate in it; give the CA that signs the clients' certificates")
		}
		chain := x509.NewCertPool()
		for _, der := range pair.Certificate[1:] {
			if c, err := x509.ParseCertificate(der); err == nil {
				chain.AddCert(c)
			}
		}
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: cas, Intermediates: chain, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			return root, usererr.New("--tls-cert "+t.CertFile, "the server's own system worker presents it to the frontend, so it must be valid "+
				"for client authentication (extended key usage clientAuth) under --tls-ca %s: %v", t.ClientCAFile, err)
		}
		root.Frontend.Server.ClientCAFiles = []string{t.ClientCAFile}
		root.Frontend.Server.RequireClientAuth = true
	}
	root.SystemWorker = config.WorkerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile,
		Client: config.ClientTLS{ServerName: name, RootCAFiles: []string{t.CertFile}}}
	return root, nil
}

// checkPort tries to listen on ip:port, so that a port in use is a message now instead of
// the Temporal server exiting the process once it tries to bind the port.
func checkPort(ip string, port int) error {
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return usererr.New(addr, "in use (another herd server? pick a free port with `herd server --port N`)")
	}
	if err != nil {
		return usererr.New(addr, "cannot listen: %v", err)
	}
	return l.Close()
}

// causeLogger is the server's logger with two additions: it keeps the last error it
// logged, for the error of a start that fails, and a fatal message, on which the server
// exits the process at once, also goes to stderr, so that the cause is not only in
// server.log.
type causeLogger struct {
	log.Logger
	file string
	mu   sync.Mutex
	last string
}

func (l *causeLogger) Error(msg string, tags ...tag.Tag) {
	l.keep(msg, tags)
	l.Logger.Error(msg, tags...)
}

func (l *causeLogger) Fatal(msg string, tags ...tag.Tag) {
	l.keep(msg, tags)
	fmt.Fprintf(os.Stderr, "herd: the Temporal server stopped: %s (log: %s)\n", l.text(), l.file)
	l.Logger.Fatal(msg, tags...)
}

func (l *causeLogger) keep(msg string, tags []tag.Tag) {
	var b strings.Builder
	b.WriteString(msg)
	for _, t := range tags {
		fmt.Fprintf(&b, " %s=%v", t.Key(), t.Value())
	}
	l.mu.Lock()
	l.last = b.String()
	l.mu.Unlock()
}

// text is the last error logged, on one line.
func (l *causeLogger) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(strings.Fields(l.last), " ")
}

// cause is ": " and the last error logged, or "" if none was.
func (l *causeLogger) cause() string {
	if t := l.text(); t != "" {
		return ": " + t
	}
	return ""
}

// freePorts asks the kernel for n distinct free ports on ip. Holding all listeners open
// until every port is chosen keeps the n ports distinct.
func freePorts(ip string, n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, fmt.Errorf("devserver: finding a free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
