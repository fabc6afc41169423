package tether_test

import (
	"strings"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

func TestCallReturnsTheRemoteAnswer(t *testing.T) {
	d := sharedDemo(t)
	res, err := d.client.Call(within(t, 30*time.Second), tether.Request{
		Verb: "health", Args: []string{"call-" + tether.NewTurnID()[:8]}, RequestID: "go-call-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || res.ExitSignal != "" || res.Stdout != "ok\n" || res.Stderr != "" {
		t.Fatalf("unexpected answer %+v", res)
	}
	if res.RequestID != "go-call-1" || res.Target != "demo" || res.Verb != "health" {
		t.Fatalf("request id, target or verb not echoed: %+v", res)
	}
	if res.Duration <= 0 || res.Cached || res.StdoutTruncated || res.StderrTruncated {
		t.Fatalf("unexpected flags or duration: %+v", res)
	}
}

func TestCallCarriesATurnsMessageIntact(t *testing.T) {
	d := sharedDemo(t)
	message := "Grüß dich, tether! \"quotes\", $HOME; and more"
	req := tether.TurnRequest(session, tether.NewTurnID(), message)
	res, err := d.client.Call(within(t, 60*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 0 || res.Stdout != answer(message) {
		t.Fatalf("want %q, got %+v", answer(message), res)
	}
	if res.RequestID != req.RequestID {
		t.Fatalf("want request id %q, got %q", req.RequestID, res.RequestID)
	}
}

func TestANonZeroExitIsAResultNotAnError(t *testing.T) {
	d := sharedDemo(t)
	// reset takes one argument: the remote refuses two, with exit status 2.
	res, err := d.client.Call(within(t, 30*time.Second), tether.Request{Verb: "reset", Args: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitStatus != 2 || res.Stdout != "" || res.Stderr == "" {
		t.Fatalf("want exit status 2 with a reason on stderr, got %+v", res)
	}
}

func TestARecentIdenticalCallOfACachedVerbIsShared(t *testing.T) {
	d := sharedDemo(t)
	// health has a cache_ttl of 2 s: the second call, made at once, shares the first's run.
	req := tether.Request{Verb: "health", Args: []string{"cache-" + tether.NewTurnID()[:8]}}
	first, err := d.client.Call(within(t, 30*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	second, err := d.client.Call(within(t, 30*time.Second), req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached || !second.Cached || second.Stdout != first.Stdout {
		t.Fatalf("want a fresh answer, then a cached copy: %+v, %+v", first, second)
	}
}

func TestHealthReadsTheCachedDocument(t *testing.T) {
	d := sharedDemo(t)
	h, err := d.client.Health(within(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	target, ok := h.Targets["demo"]
	if !ok || h.Status != "up" || target.Status != "up" {
		t.Fatalf("want the demo target up, got %+v", h)
	}
	if target.Connections < 1 || target.ChannelsCapacity < 1 || target.ConsecutiveFailures != 0 {
		t.Fatalf("unexpected counts: %+v", target)
	}
	if target.Transport == nil || !target.Transport.OK || target.Transport.CheckedAt.IsZero() || target.LastOKAt == nil {
		t.Fatalf("want a passing transport probe with its time: %+v", target)
	}
	if age := time.Since(target.Transport.CheckedAt); age > time.Minute || age < -time.Minute {
		t.Fatalf("transport probe checked_at is %v away from now", age)
	}
}

func TestAnEmptySocketMeansTetherSocketFromTheEnvironment(t *testing.T) {
	d := sharedDemo(t)
	t.Setenv("TETHER_SOCKET", d.socket)
	if _, err := tether.New("").Health(within(t, 10*time.Second)); err != nil {
		t.Fatalf("New(\"\") did not use $TETHER_SOCKET: %v", err)
	}
	t.Setenv("TETHER_SOCKET", "")
	// Unless a tether serves there on this machine, the error names the default socket.
	_, err := tether.New("").Health(within(t, 10*time.Second))
	if err != nil && !strings.Contains(err.Error(), tether.DefaultSocket) {
		t.Fatalf("want an error naming %s, got %v", tether.DefaultSocket, err)
	}
}
