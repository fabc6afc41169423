package tether_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

func TestSentinelsMatchByCodeOnly(t *testing.T) {
	sentinels := map[string]*tether.Error{
		"bad_request":            tether.ErrBadRequest,
		"verb_not_allowed":       tether.ErrVerbNotAllowed,
		"forbidden":              tether.ErrForbidden,
		"unknown_target":         tether.ErrUnknownTarget,
		"payload_too_large":      tether.ErrPayloadTooLarge,
		"busy":                   tether.ErrBusy,
		"upstream_auth_failed":   tether.ErrUpstreamAuthFailed,
		"host_key_mismatch":      tether.ErrHostKeyMismatch,
		"upstream_unreachable":   tether.ErrUnreachable,
		"upstream_misconfigured": tether.ErrUpstreamMisconfigured,
		"connection_lost":        tether.ErrConnectionLost,
		"shutting_down":          tether.ErrShuttingDown,
		"timeout":                tether.ErrTimeout,
		"internal":               tether.ErrInternal,
		"cancelled":              tether.ErrCancelled,
		"not_found":              tether.ErrNotFound,
	}
	for code := range sentinels {
		err := fmt.Errorf("wrapped: %w", &tether.Error{Code: code, Message: "m", Retryable: code == "busy", Status: 503})
		for other, sentinel := range sentinels {
			if got := errors.Is(err, sentinel); got != (other == code) {
				t.Errorf("errors.Is(%s, Err for %s) = %v", code, other, got)
			}
		}
		if tether.IsRetryable(err) != (code == "busy") {
			t.Errorf("IsRetryable(%s) follows the error's retryable flag", code)
		}
	}
	if tether.IsRetryable(errors.New("not from tether")) || tether.IsRetryable(nil) {
		t.Error("only a retryable *Error is retryable")
	}
}

func TestRefusalsComeBackAsTheirSentinels(t *testing.T) {
	d := sharedDemo(t)
	cases := []struct {
		name     string
		req      tether.Request
		sentinel *tether.Error
		status   int
		// echoed: tether read the request id; else it made one up.
		echoed bool
	}{
		{"an argument with a space", tether.Request{Verb: "health", Args: []string{"a b"}}, tether.ErrBadRequest, 400, true},
		{"a request id outside its charset", tether.Request{Verb: "health", Args: []string{session}, RequestID: "no spaces"}, tether.ErrBadRequest, 400, false},
		{"a verb outside the allowlist", tether.Request{Verb: "sleep", Args: []string{"10"}}, tether.ErrVerbNotAllowed, 403, true},
		{"no such target", tether.Request{Target: "nope", Verb: "health", Args: []string{session}}, tether.ErrUnknownTarget, 404, true},
		{"a body over max_request_bytes", tether.Request{Verb: "health", Args: []string{session}, Stdin: make([]byte, 1<<20)}, tether.ErrPayloadTooLarge, 413, false},
		{"a command line over 131072 bytes", tether.Request{Verb: "health", Args: []string{strings.Repeat("a", 70000), strings.Repeat("b", 70000)}}, tether.ErrPayloadTooLarge, 413, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.req.RequestID == "" {
				c.req.RequestID = fmt.Sprintf("go-refusal-%d", i)
			}
			_, err := d.client.Call(within(t, 30*time.Second), c.req)
			e := wantCode(t, err, c.sentinel, c.status, false)
			if echoed := e.RequestID == c.req.RequestID; echoed != c.echoed || e.RequestID == "" {
				t.Fatalf("request id %q (sent %q), want it echoed: %v", e.RequestID, c.req.RequestID, c.echoed)
			}
		})
	}
}

func TestTimeoutWhenTheDeadlinePassesMidCall(t *testing.T) {
	d := sharedDemo(t)
	held := d.holdSession(t)
	deadline := time.Second
	start := time.Now()
	_, err := d.client.Call(within(t, deadline), tether.TurnRequest(held.name, tether.NewTurnID(), "late"))
	took := time.Since(start)
	// run-turn is not idempotent in the demo: it may have run, so not retryable.
	wantCode(t, err, tether.ErrTimeout, 504, false)
	if took < deadline-50*time.Millisecond {
		t.Fatalf("timeout after %v, before the %v deadline", took, deadline)
	}
}

func TestBusyWhenNoChannelComesFree(t *testing.T) {
	d := sharedDemo(t)
	h, err := d.client.Health(within(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	capacity := h.Targets["demo"].ChannelsCapacity
	held := d.holdSession(t)
	// Fill every channel with a turn that waits on the laptop.
	var wg sync.WaitGroup
	results := make(chan error, capacity)
	for i := 0; i < capacity; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.client.Call(within(t, 120*time.Second), tether.TurnRequest(held.name, tether.NewTurnID(), "queued"))
			results <- err
		}()
	}
	held.waitQueued(t, capacity)
	// The next call waits queue_timeout (5 s) for a channel, then is refused: nothing sent.
	// (reset's own timeout, 15 s, is longer than that wait; health's, 5 s, is not.)
	_, err = d.client.Call(within(t, 60*time.Second), tether.Request{Verb: "reset", Args: []string{"busy-" + tether.NewTurnID()[:8]}})
	wantCode(t, err, tether.ErrBusy, 429, true)

	held.release()
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("a held turn failed once released: %v", err)
		}
	}
}

func TestShuttingDownWhileTetherDrains(t *testing.T) {
	d := ownDemo(t)
	held := d.holdSession(t)
	// A turn in flight keeps the drain going until it ends.
	inFlight := make(chan error, 1)
	go func() {
		res, err := d.client.Call(within(t, 120*time.Second), tether.TurnRequest(held.name, tether.NewTurnID(), "in flight"))
		if err == nil && res.Stdout != answer("in flight") {
			err = fmt.Errorf("unexpected answer %+v", res)
		}
		inFlight <- err
	}()
	held.waitQueued(t, 1)
	d.signal(t, syscall.SIGTERM)

	var err error
	waitFor(t, "a shutting_down answer", func() bool {
		_, err = d.client.Call(within(t, 10*time.Second), tether.Request{Verb: "health", Args: []string{session}})
		return err != nil
	})
	wantCode(t, err, tether.ErrShuttingDown, 503, true)

	// The call in flight still gets its answer, then tether exits.
	held.release()
	if err := <-inFlight; err != nil {
		t.Fatalf("the call in flight during the drain: %v", err)
	}
	if code := d.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("want exit 0 after the drain, got %d", code)
	}
}

func TestACancelledContextEndsACallAtOnce(t *testing.T) {
	d := sharedDemo(t)
	held := d.holdSession(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.client.Call(ctx, tether.TurnRequest(held.name, tether.NewTurnID(), "cancelled"))
		done <- err
	}()
	held.waitQueued(t, 1)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the call went on for a second after its context was cancelled")
	}
}
