package tether_test

// The tests run against the real `tether demo` (docs/cli.md#tether-demo) on a temporary
// socket: the sidecar, its SSH server, and (when the demo has it) the real `tether shim` as
// the laptop half, whose journal, audit log and session locks live in the demo's TMPDIR.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

const (
	// readyWithin bounds the demo's start (keys, SSH server, first probes) on a loaded machine.
	readyWithin = 60 * time.Second
	// poll is the pause between looks at something the tests wait for.
	poll = 25 * time.Millisecond
	// session is the demo's example session.
	session = "demo-session"
)

var tetherBin string

func TestMain(m *testing.M) {
	tetherBin = os.Getenv("TETHER_BIN")
	if tetherBin == "" {
		tetherBin = filepath.Join("..", "..", "target", "debug", "tether")
	}
	if abs, err := filepath.Abs(tetherBin); err == nil {
		tetherBin = abs
	}
	if _, err := os.Stat(tetherBin); err != nil {
		fmt.Fprintf(os.Stderr, "the tether binary is missing (%v): run `cargo build` at the repository's root, or set TETHER_BIN\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if shared.demo != nil {
		shared.demo.stop()
	}
	os.Exit(code)
}

// demo is a running `tether demo`.
type demo struct {
	cmd    *exec.Cmd
	dir    string // its TMPDIR: socket, logs, the laptop's files
	socket string
	client *tether.Client
	exited chan struct{}
}

var shared struct {
	once sync.Once
	demo *demo
	err  error
}

// sharedDemo is one demo for the tests that leave it running as they found it.
func sharedDemo(t *testing.T) *demo {
	t.Helper()
	shared.once.Do(func() { shared.demo, shared.err = launch() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	d := shared.demo
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo log (last lines):\n%s", d.logTail())
		}
	})
	return d
}

// ownDemo is a demo for one test (one that stops or kills it), stopped when the test ends.
func ownDemo(t *testing.T) *demo {
	t.Helper()
	d, err := launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("demo log (last lines):\n%s", d.logTail())
		}
		d.stop()
	})
	return d
}

func launch() (*demo, error) {
	dir, err := os.MkdirTemp("", "tether-go-test-")
	if err != nil {
		return nil, err
	}
	d := &demo{dir: dir, socket: filepath.Join(dir, "t.sock"), exited: make(chan struct{})}
	d.client = tether.New(d.socket)
	out, err := os.Create(filepath.Join(dir, "demo.log"))
	if err != nil {
		return nil, err
	}
	d.cmd = exec.Command(tetherBin, "demo", "--socket", d.socket, "--admin-addr", "127.0.0.1:0")
	d.cmd.Env = append(os.Environ(), "TMPDIR="+dir, "RUST_LOG=info,russh=warn")
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s demo: %w", tetherBin, err)
	}
	go func() {
		_ = d.cmd.Wait()
		_ = out.Close()
		close(d.exited)
	}()
	if err := d.waitUp(); err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// waitUp polls /v1/health until the target `demo` is up.
func (d *demo) waitUp() error {
	deadline := time.Now().Add(readyWithin)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		h, err := d.client.Health(ctx)
		cancel()
		if err == nil && h.Targets["demo"].Status == "up" {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("tether demo exited before its target was up:\n%s", d.log())
		case <-time.After(poll):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo target was not up within %v (last: %+v, %v):\n%s", readyWithin, h, err, d.log())
		}
	}
}

// signal sends sig to the demo.
func (d *demo) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("cannot signal the demo: %v", err)
	}
}

// waitExit waits for the demo to exit and returns its exit code.
func (d *demo) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-d.exited:
		return d.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("the demo did not exit within %v", within)
		return 0
	}
}

// stop drains the demo (SIGTERM), kills it if it hangs, and removes its files.
func (d *demo) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(45 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	// Best effort: a detached shim supervisor may still be finishing in there.
	_ = os.RemoveAll(d.dir)
}

func (d *demo) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "demo.log"))
	return string(b)
}

func (d *demo) logTail() string {
	log := d.log()
	if len(log) > 8192 {
		log = log[len(log)-8192:]
	}
	return log
}

// laptop is the directory of the demo's `tether shim`: shim.toml, journal, audit log.
func (d *demo) laptop(t *testing.T) string {
	t.Helper()
	found, _ := filepath.Glob(filepath.Join(d.dir, "tether-demo-laptop-*"))
	if len(found) != 1 {
		t.Fatalf("this tether demo has no laptop half (found %q, want one tether-demo-laptop-* in its TMPDIR): "+
			"the test needs the demo that runs run-turn through `tether shim` (docs/shim.md)", found)
	}
	return found[0]
}

// outcomes counts the shim's audit lines for a key by outcome: ran, replayed, attached, refused.
func (d *demo) outcomes(t *testing.T, key string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(d.laptop(t), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		var line struct {
			Key     *string `json:"key"`
			Outcome string  `json:"outcome"`
		}
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			t.Fatalf("audit line %q: %v", lines.Text(), err)
		}
		if line.Key != nil && *line.Key == key {
			counts[line.Outcome]++
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// held is a session whose turns wait on the laptop until release: the test holds the first
// place in the shim's queue for that session (lock_arg; docs/shim.md#locks-one-at-a-time), as
// a long turn of that session would.
type held struct {
	name    string
	dir     string
	release func()
}

// holdSession takes a fresh session's place in the shim's queue; it is released at the
// latest when the test ends.
func (d *demo) holdSession(t *testing.T) *held {
	t.Helper()
	name := "held-" + tether.NewTurnID()[:8]
	dir := filepath.Join(d.laptop(t), "journal", "locks", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ticket := filepath.Join(dir, fmt.Sprintf("%020d", 1))
	f, err := os.OpenFile(ticket, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	h := &held{name: name, dir: dir, release: func() {
		once.Do(func() {
			_ = os.Remove(ticket)
			_ = f.Close()
		})
	}}
	t.Cleanup(h.release)
	return h
}

// waitQueued waits until n calls wait behind the held place: they reached the laptop.
func (h *held) waitQueued(t *testing.T, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d calls queued on session %s", n, h.name), func() bool {
		names, _ := filepath.Glob(filepath.Join(h.dir, strings.Repeat("[0-9]", 20)))
		return len(names) >= n+1
	})
}

// waitFor polls cond until it holds, failing the test after readyWithin.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(readyWithin)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, readyWithin)
		}
		time.Sleep(poll)
	}
}

// proxy passes connections to a Unix socket through, and can cut them all at once: the
// app's connection to tether breaking.
type proxy struct {
	path     string
	listener net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	p := &proxy{path: filepath.Join(t.TempDir(), "proxy.sock")}
	var err error
	if p.listener, err = net.Listen("unix", p.path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.listener.Close()
		p.cut()
	})
	go p.serve(upstream)
	return p
}

func (p *proxy) serve(upstream string) {
	for {
		down, err := p.listener.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("unix", upstream)
		if err != nil {
			_ = down.Close()
			continue
		}
		p.mu.Lock()
		p.accepted++
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		pipe := func(to, from net.Conn) {
			_, _ = io.Copy(to, from)
			_ = to.Close()
			_ = from.Close()
		}
		go pipe(up, down)
		go pipe(down, up)
	}
}

// cut closes every connection passed through so far.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// answer is what the demo's assistant says to message.
func answer(message string) string {
	return "paliadin (demo): you said \"" + message + "\"\n"
}

// within returns a context that ends after d, cancelled when the test ends.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails the test unless err is an *Error with the sentinel's code, the HTTP status
// and the retryable flag given.
func wantCode(t *testing.T, err error, sentinel *tether.Error, status int, retryable bool) *tether.Error {
	t.Helper()
	var e *tether.Error
	if !errors.As(err, &e) {
		t.Fatalf("want %s, got %T %v", sentinel.Code, err, err)
	}
	if !errors.Is(err, sentinel) || e.Status != status || e.Retryable != retryable || tether.IsRetryable(err) != retryable {
		t.Fatalf("want %s (HTTP %d, retryable %v), got %+v", sentinel.Code, status, retryable, e)
	}
	if e.Message == "" {
		t.Fatalf("%s came without a message", e.Code)
	}
	return e
}

// offlineTether answers every call as tether does while the laptop sleeps:
// upstream_unreachable (HTTP 503), then closes the connection. The demo cannot be made to
// lose its laptop; this stands in for that one answer.
type offlineTether struct {
	path string
	// answered gets each request once the client has read its answer and hung up.
	answered chan sentCall
}

// sentCall is what a client sent in a POST /v1/call.
type sentCall struct {
	Verb      string   `json:"verb"`
	Args      []string `json:"args"`
	RequestID string   `json:"request_id"`
}

func startOfflineTether(t *testing.T) *offlineTether {
	t.Helper()
	o := &offlineTether{path: filepath.Join(t.TempDir(), "offline.sock"), answered: make(chan sentCall, 64)}
	listener, err := net.Listen("unix", o.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Close() })
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go o.answer(conn)
		}
	}()
	return o
}

func (o *offlineTether) answer(conn net.Conn) {
	defer conn.Close()
	in := bufio.NewReader(conn)
	req, err := http.ReadRequest(in)
	if err != nil {
		return
	}
	var call sentCall
	if err := json.NewDecoder(req.Body).Decode(&call); err != nil {
		return
	}
	body := fmt.Sprintf(`{"error":{"code":"upstream_unreachable","message":"target demo is down: cannot reach 127.0.0.1:1","retryable":true},"request_id":%q}`, call.RequestID)
	fmt.Fprintf(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	// The client hangs up once it has read the whole answer.
	_, _ = io.Copy(io.Discard, in)
	o.answered <- call
}
