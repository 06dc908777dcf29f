package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8234": true, "127.0.0.2:80": true, "[::1]:8234": true, "localhost:8234": true,
		":8234": false, "0.0.0.0:8234": false, "192.168.1.5:8234": false, "[::]:8234": false, "example.com:80": false,
	} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// serve runs Handler over a fake API (which answers "api") and a small asset tree.
func serve(t *testing.T, o Options) *httptest.Server {
	t.Helper()
	o.Assets = fstest.MapFS{
		"index.html":             {Data: []byte("<!doctype html>page")},
		"app.js":                 {Data: []byte("// app")},
		"vendor/uplot/uPlot.css": {Data: []byte("x")},
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api") })
	s := httptest.NewServer(Handler(api, o))
	t.Cleanup(s.Close)
	return s
}

// do sends a request with the raw path and query as given (no cleaning) and returns the
// status and body.
func do(t *testing.T, method, url string, header http.Header) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func TestAssetsServeOnlyEmbeddedFiles(t *testing.T) {
	s := serve(t, Options{Loopback: true})
	for path, want := range map[string]int{
		"/":                                200,
		"/static/app.js":                   200,
		"/static/vendor/uplot/uPlot.css":   200,
		"/static/missing.js":               404,
		"/static/vendor":                   404, // a folder: never listed
		"/static/vendor/":                  400,
		"/static/../ui.go":                 400,
		"/static/..%2fui.go":               400,
		"/static/%2e%2e/%2e%2e/etc/passwd": 400,
		"/static//etc/passwd":              400,
		"/static/vendor%5c..%5capp.js":     400,
		"/index.html":                      404,
		"/api":                             404,
	} {
		code, body, resp := do(t, "GET", s.URL+path, nil)
		if code != want {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); csp != CSP {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
	if code, _, _ := do(t, "POST", s.URL+"/", nil); code != 405 {
		t.Errorf("POST /: %d, want 405", code)
	}
	if code, _, _ := do(t, "GET", s.URL+"/api/runs?x="+strings.Repeat("a", MaxQuery), nil); code != 414 {
		t.Errorf("a query over %d bytes: %d, want 414", MaxQuery, code)
	}
}

func TestTokenOffLoopback(t *testing.T) {
	s := serve(t, Options{Token: "secret"})
	if code, _, _ := do(t, "GET", s.URL+"/", nil); code != 200 {
		t.Errorf("the page without a token: %d, want 200", code)
	}
	for _, h := range []http.Header{nil, {"Authorization": {"Bearer wrong"}}, {"Cookie": {CookieName + "=wrong"}}, {"Authorization": {"secret"}}} {
		if code, _, _ := do(t, "GET", s.URL+"/api/runs", h); code != 401 {
			t.Errorf("GET /api/runs with %v: %d, want 401", h, code)
		}
	}
	if code, body, _ := do(t, "GET", s.URL+"/api/runs", http.Header{"Authorization": {"Bearer secret"}}); code != 200 || body != "api" {
		t.Errorf("with the bearer token: %d %q", code, body)
	}
	if code, _, _ := do(t, "GET", s.URL+"/?token=wrong", nil); code != 401 {
		t.Errorf("/?token=wrong: %d, want 401", code)
	}
	code, _, resp := do(t, "GET", s.URL+"/?token=secret", nil)
	cookies := resp.Cookies()
	if code != 303 || resp.Header.Get("Location") != "/" || len(cookies) != 1 || cookies[0].Name != CookieName ||
		!cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("/?token=secret: %d, Location %q, cookies %v", code, resp.Header.Get("Location"), cookies)
	}
	if code, _, _ := do(t, "GET", s.URL+"/api/runs", http.Header{"Cookie": {cookies[0].String()}}); code != 200 {
		t.Errorf("with the cookie: %d, want 200", code)
	}
}

func TestNoTokenOffLoopbackRefusesTheAPI(t *testing.T) {
	s := serve(t, Options{})
	if code, _, _ := do(t, "GET", s.URL+"/api/runs", nil); code != 401 {
		t.Errorf("off loopback without a token: %d, want 401", code)
	}
}

// A loopback dashboard needs no token, so it answers only requests addressed to a
// loopback name (not another site's name rebound to 127.0.0.1) and refuses a change sent
// from another site's page; its own page's requests and clients that are not browsers
// pass.
func TestLoopbackRefusesOtherSites(t *testing.T) {
	s := serve(t, Options{Loopback: true})
	host := strings.TrimPrefix(s.URL, "http://")
	for _, c := range []struct {
		method, host string
		header       http.Header
		want         int
	}{
		{"GET", host, nil, 200},
		{"GET", "localhost:8234", nil, 200},
		{"GET", "[::1]:8234", nil, 200},
		{"GET", "rebound.example:8234", nil, 421},
		{"POST", host, nil, 200},
		{"POST", host, http.Header{"Origin": {"http://" + host}, "Sec-Fetch-Site": {"same-origin"}}, 200},
		{"POST", host, http.Header{"Origin": {"https://other.example"}}, 403},
		{"POST", host, http.Header{"Origin": {"null"}}, 403},
		{"POST", host, http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403},
	} {
		req, err := http.NewRequest(c.method, s.URL+"/api/control?name=a&action=stop", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = c.host
		for k, v := range c.header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s Host %s %v: %d, want %d", c.method, c.host, c.header, resp.StatusCode, c.want)
		}
	}
}
