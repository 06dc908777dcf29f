package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `herd server` serves the Temporal Web UI by default and says where; a run submitted to
// the server is listed through the UI's API. --temporal-ui off serves none.
func TestServerTemporalUI(t *testing.T) {
	dir := tinyRun(t)
	home := filepath.Join(dir, "home")
	// The default address, or a free port when another UI holds 8233.
	url := start(t, dir, regexp.MustCompile(`^Temporal UI at (http://127\.0\.0\.1:\d+)$`), "server", "--port", "0", "--state-dir", home)
	if page := httpGet(t, url+"/"); !strings.Contains(page, "<html") {
		t.Fatalf("GET %s/ is not the UI's page:\n%.300s", url, page)
	}
	if _, stderr, status := herd(t, dir, "run", "run.yaml", "--state-dir", home, "--detach"); status != 0 {
		t.Fatalf("run --detach: status %d: %s", status, stderr)
	}
	waitListed(t, url, "e2e")

	first := start(t, dir, regexp.MustCompile(`^((Temporal UI at|workers:) .*)$`), "server", "--port", "0", "--state-dir", filepath.Join(dir, "home2"), "--temporal-ui", "off")
	if !strings.HasPrefix(first, "workers:") {
		t.Errorf("with --temporal-ui off herd server printed %q", first)
	}
}

// `herd run --temporal-ui ADDR` on the embedded server serves the Temporal Web UI there,
// says where, and the UI lists the run while it trains (held at step 1 until the UI has
// listed it).
func TestRunTemporalUI(t *testing.T) {
	dir := tinyRun(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	release, _ := holdAt(t, 1)
	s := startHerd(t, dir, "run", "run.yaml", "--state-dir", filepath.Join(dir, "home"), "--temporal-ui", addr)
	re := regexp.MustCompile(`(?m)^Temporal UI at (http://\S+)$`)
	s.waitFor(t, "the Temporal UI's address", func() bool { return re.MatchString(s.stderr.String()) })
	if url := re.FindStringSubmatch(s.stderr.String())[1]; url != "http://"+addr {
		t.Fatalf("herd run --temporal-ui %s serves it at %s", addr, url)
	}
	waitListed(t, "http://"+addr, "e2e")
	release()
	select {
	case err := <-s.exited:
		s.exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("herd run: %v\n%s", err, s.stderr.String())
		}
	case <-time.After(5 * time.Minute): // a bound on a hang
		t.Fatalf("herd run still running after its hold was released:\n%s", s.stderr.String())
	}
}

// `herd run` serves no Temporal Web UI unless given an address: parallel runs would
// race for its port, and the UI server exits the process that loses.
func TestRunTemporalUIOffByDefault(t *testing.T) {
	dir := tinyRun(t)
	_, stderr, status := herd(t, dir, "run", "run.yaml", "--state-dir", filepath.Join(dir, "home"))
	if status != 0 {
		t.Fatalf("herd run: status %d: %s", status, stderr)
	}
	if strings.Contains(stderr, "Temporal UI") {
		t.Errorf("herd run without --temporal-ui serves the Temporal UI:\n%s", stderr)
	}
}

// waitListed waits until the UI at url lists the workflow id alone, through its API.
func waitListed(t *testing.T, url, id string) {
	t.Helper()
	var body string
	waitUntil(t, "the UI listing "+id, func() bool {
		var list struct {
			Executions []struct{ Execution struct{ WorkflowID string } }
		}
		body = httpGet(t, url+"/api/v1/namespaces/default/workflows")
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("workflows through the UI: %v:\n%.300s", err, body)
		}
		if len(list.Executions) > 1 || len(list.Executions) == 1 && list.Executions[0].Execution.WorkflowID != id {
			t.Fatalf("the UI lists %s, want %s alone", body, id)
		}
		return len(list.Executions) == 1
	})
}

// A --temporal-ui beyond loopback is refused without --insecure (which herd run has not),
// and one that is not IP:PORT always: a user error before anything starts, the state dir
// not even created.
func TestServerTemporalUIRefused(t *testing.T) {
	dir := tinyRun(t)
	for _, c := range []struct {
		args     []string
		ui, want string
	}{
		{[]string{"server"}, "0.0.0.0:8233", "--insecure"},
		{[]string{"server"}, "localhost:8233", "not IP:PORT"},
		{[]string{"run", "run.yaml"}, "0.0.0.0:8233", "--insecure"},
	} {
		home := filepath.Join(t.TempDir(), "home")
		stdout, stderr, status := herd(t, dir, append(c.args, "--state-dir", home, "--temporal-ui", c.ui)...)
		wantUserError(t, stdout, stderr, status, "--temporal-ui "+c.ui, c.want)
		if _, err := os.Stat(home); !os.IsNotExist(err) {
			t.Errorf("herd %s --temporal-ui %s: the state dir was created (%v)", c.args[0], c.ui, err)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s:\n%.300s", url, resp.Status, b)
	}
	return string(b)
}
