// Package ui is the web dashboard's HTTP plumbing, with no herd dependencies: the page and
// its assets embedded with go:embed, the access rule (loopback, or a token), request
// limits, security headers and a Server-Sent Events writer. The API itself (runs, sweeps,
// controls over Temporal) is another handler, package workflows/dashboard, which Handler
// mounts under /api/.
package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// Assets is the page and its assets, rooted at the static folder: index.html, app.js,
// style.css, vendor/...
func Assets() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // "static" is embedded above: cannot happen
	}
	return sub
}

// Limits on what a request may carry. A query names a run or two and an action, so 4 KiB
// is far above any legitimate one; a larger one is refused before anything reads it.
const (
	MaxQuery       = 4 << 10
	MaxHeaderBytes = 16 << 10
	maxBody        = 4 << 10
)

// CookieName is the cookie a visit to /?token=TOKEN sets, so that the page works
// without the token in its URL.
const CookieName = "herd_ui_token"

// CSP is the Content-Security-Policy of every response: scripts, styles, images and
// connections from the dashboard's own origin only, no inline script, no framing. Inline
// style attributes are allowed (chart libraries set them).
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Options says who may use the dashboard.
type Options struct {
	// Token, when set, is required on every route but the page and its assets
	// (Authorization: Bearer TOKEN, or the cookie a visit to /?token=TOKEN sets).
	Token string
	// Loopback is whether the dashboard listens on a loopback address only (see
	// Loopback): then no token is needed unless Token is set. Off loopback, a dashboard
	// without a Token refuses every API request: it never serves the runs' controls to a
	// network by accident.
	Loopback bool
	// Assets is the page and its assets; nil means the embedded ones (Assets).
	Assets fs.FS
}

// Handler serves the dashboard: the page at /, its assets at /static/PATH, and api under
// /api/, behind the access rule of o, the request limits and the security headers.
func Handler(api http.Handler, o Options) http.Handler {
	if o.Assets == nil {
		o.Assets = Assets()
	}
	return &handler{api: api, o: o}
}

type handler struct {
	api http.Handler
	o   Options
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	if len(r.URL.RawQuery) > MaxQuery {
		Error(w, http.StatusRequestURITooLong, fmt.Sprintf("the query string is %d bytes, more than %d", len(r.URL.RawQuery), MaxQuery))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if h.o.Loopback && !loopbackHost(r.Host) {
		Error(w, http.StatusMisdirectedRequest, fmt.Sprintf("Host %q: this dashboard answers on a loopback address only", r.Host))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead && crossSite(r) {
		Error(w, http.StatusForbidden, "a request from another site: the dashboard's controls are used from its own page")
		return
	}
	switch p := r.URL.Path; {
	case p == "/":
		h.page(w, r)
	case strings.HasPrefix(p, "/static/"):
		h.asset(w, r, strings.TrimPrefix(p, "/static/"))
	case strings.HasPrefix(p, "/api/"):
		if !h.allowed(r) {
			Error(w, http.StatusUnauthorized, "this dashboard needs its token: open the URL it printed (with ?token=), or send Authorization: Bearer TOKEN")
			return
		}
		h.api.ServeHTTP(w, r)
	default:
		Error(w, http.StatusNotFound, "no such page: "+p)
	}
}

// page serves index.html; with ?token=TOKEN it sets the token's cookie first and sends
// the browser to / without the token in the URL (so that it stays out of history and
// Referer headers).
func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		Error(w, http.StatusMethodNotAllowed, "the page is read with GET")
		return
	}
	if q := r.URL.Query(); q.Has("token") && h.o.Token != "" {
		if !equal(q.Get("token"), h.o.Token) {
			Error(w, http.StatusUnauthorized, "token: not this dashboard's token")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: h.o.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	h.serveFile(w, r, "index.html")
}

// asset serves one embedded file. Only clean relative paths name one: "..", a leading
// slash, a backslash or an empty element is a 400, a folder or a missing file a 404; no
// listing is ever served.
func (h *handler) asset(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		Error(w, http.StatusMethodNotAllowed, "assets are read with GET")
		return
	}
	if !fs.ValidPath(name) || strings.Contains(name, `\`) || name == "." {
		Error(w, http.StatusBadRequest, fmt.Sprintf("path %q: want a clean relative path under /static/", name))
		return
	}
	h.serveFile(w, r, name)
}

func (h *handler) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	f, err := h.o.Assets.Open(name)
	if err != nil {
		Error(w, http.StatusNotFound, "no such file: "+name)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		Error(w, http.StatusNotFound, "no such file: "+name)
		return
	}
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		Error(w, http.StatusInternalServerError, "asset "+name+" cannot be served")
		return
	}
	if name == "index.html" {
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, path.Base(name), st.ModTime(), rs)
}

// allowed reports whether r may use the API: any request on loopback without a token,
// else one carrying the token.
func (h *handler) allowed(r *http.Request) bool {
	if h.o.Token == "" {
		return h.o.Loopback
	}
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(auth, h.o.Token) {
		return true
	}
	c, err := r.Cookie(CookieName)
	return err == nil && equal(c.Value, h.o.Token)
}

// equal compares a presented token with the real one in constant time, so that response
// times do not reveal how much of a guess was right.
func equal(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// NewToken returns a random token: 128 bits, hex.
func NewToken() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// Loopback reports whether addr (host:port, or a listener's address) is on a loopback
// interface only: 127.0.0.0/8, ::1 or "localhost". An empty host (":8234") listens on
// every interface, so it is not.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// NewServer is the http.Server of a dashboard handler: headers bounded in size and time.
// It sets no write timeout, which would cut the event streams.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: MaxHeaderBytes}
}

// Error writes a JSON error response: {"error": msg}.
func Error(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// JSON writes v as a 200 JSON response.
func JSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		Error(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// SSE writes a Server-Sent Events stream (https://html.spec.whatwg.org/multipage/server-sent-events.html).
type SSE struct {
	w  io.Writer
	rc *http.ResponseController
}

// NewSSE starts an event stream on w: its headers go out at once, so that the browser's
// EventSource opens before the first event.
func NewSSE(w http.ResponseWriter) (*SSE, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s := &SSE{w: w, rc: http.NewResponseController(w)}
	if err := s.rc.Flush(); err != nil {
		return nil, fmt.Errorf("event stream: %w", err)
	}
	return s, nil
}

// Send writes one event whose data is one line (JSON has no raw newlines) and flushes it.
func (s *SSE) Send(event string, data []byte) error {
	if strings.ContainsAny(event, "\r\n") || strings.ContainsAny(string(data), "\r\n") {
		return errors.New("event stream: an event name or data with a line break")
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, data); err != nil {
		return err
	}
	return s.rc.Flush()
}

// Ping writes a comment line, which keeps proxies from closing an idle stream.
func (s *SSE) Ping() error {
	if _, err := io.WriteString(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// loopbackHost reports whether a request's Host names a loopback address (localhost, an
// IP of 127.0.0.0/8, ::1), with or without a port. A loopback dashboard needs no token,
// so it must not answer a page of another site whose name was made to resolve to
// 127.0.0.1 (DNS rebinding): such a request carries that site's name as its Host.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// crossSite reports whether a browser sent r from a page of another origin: a form or
// script of any web site can POST to a dashboard on 127.0.0.1 (a "simple" request has no
// CORS preflight), and on loopback no token would stop it pausing or stopping a run.
// Browsers name the sender in Sec-Fetch-Site and Origin; clients such as curl send
// neither and are not browsers' victims.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	}
	origin := r.Header.Get("Origin")
	return origin != "" && origin != "http://"+r.Host && origin != "https://"+r.Host
}
