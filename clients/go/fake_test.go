package tether_test

// fakeTether is an HTTP server on a Unix socket that records what the client sent and
// answers what a test scripts: for what the demo cannot be made to do or to show (the
// exact request on the wire, a given answer on the nth attempt).

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
)

// sent is one request the client sent.
type sent struct {
	Method, Path string
	Header       http.Header
	// Body is the JSON body, decoded; nil without one.
	Body map[string]any
}

// reply is a scripted answer: the HTTP status and the body, written as it is.
type reply struct {
	status      int
	contentType string
	body        string
}

type fakeTether struct {
	path string
	// answer gives the reply to the nth request (from 0).
	answer func(n int, req sent) reply

	mu       sync.Mutex
	requests []sent
}

func startFakeTether(t *testing.T, answer func(n int, req sent) reply) *fakeTether {
	t.Helper()
	f := &fakeTether{path: filepath.Join(t.TempDir(), "fake.sock"), answer: answer}
	listener, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	server := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	server.Listener = listener
	server.Start()
	t.Cleanup(server.Close)
	return f
}

func (f *fakeTether) serve(w http.ResponseWriter, r *http.Request) {
	req := sent{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone()}
	if raw, _ := io.ReadAll(r.Body); len(raw) > 0 {
		if err := json.Unmarshal(raw, &req.Body); err != nil {
			http.Error(w, "the fake wants JSON: "+err.Error(), http.StatusTeapot)
			return
		}
	}
	f.mu.Lock()
	n := len(f.requests)
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	out := f.answer(n, req)
	if out.contentType == "" {
		out.contentType = "application/json"
	}
	w.Header().Set("Content-Type", out.contentType)
	w.WriteHeader(out.status)
	_, _ = io.WriteString(w, out.body)
}

// received returns the requests so far.
func (f *fakeTether) received() []sent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sent(nil), f.requests...)
}

// only returns the one request the test expects to have been sent.
func (f *fakeTether) only(t *testing.T) sent {
	t.Helper()
	got := f.received()
	if len(got) != 1 {
		t.Fatalf("want one request sent, got %d: %+v", len(got), got)
	}
	return got[0]
}

// always answers every request with the same reply.
func always(status int, body string) func(int, sent) reply {
	return func(int, sent) reply { return reply{status: status, body: body} }
}

// okAnswer is a buffered answer with a trace id.
const okAnswer = `{"request_id":"r1","target":"demo","verb":"health","exit_status":0,"exit_signal":null,` +
	`"stdout":"ok\n","stderr":"","stdout_truncated":false,"stderr_truncated":false,"duration_ms":4.2,` +
	`"cached":false,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}`
