package tether_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

const (
	parentA = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceA  = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentB = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	traceB  = "0af7651916cd43dd8448eb211c80319c"
)

// spanKey carries a test's "current span" in a context, as a tracer would.
type spanKey struct{}

// fromContext is a WithTraceContext hook that reads the span a test put in ctx.
func fromContext(ctx context.Context) (string, string) {
	parent, _ := ctx.Value(spanKey{}).(string)
	if parent == "" {
		return "", ""
	}
	return parent, "vendor=from-hook"
}

func TestTheTraceContextHookSetsTheHeadersOfEveryCall(t *testing.T) {
	fake := startFakeTether(t, func(n int, req sent) reply {
		if req.Body["stream"] == true {
			return reply{status: 200, contentType: "application/x-ndjson", body: `{"event":"exit","exit_status":0,"exit_signal":null,"trace_id":"` + traceA + `"}` + "\n"}
		}
		return reply{status: 200, body: okAnswer}
	})
	client := tether.New(fake.path, tether.WithTraceContext(fromContext))
	ctx := context.WithValue(within(t, 10*time.Second), spanKey{}, parentA)

	if _, err := client.Call(ctx, tether.Request{Verb: "health"}); err != nil {
		t.Fatal(err)
	}
	stream, err := client.Stream(ctx, tether.Request{Verb: "health"})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = stream.Next()
	}
	if err != io.EOF {
		t.Fatal(err)
	}
	for _, req := range fake.received() {
		if got := req.Header.Get("traceparent"); got != parentA {
			t.Errorf("%s %s: traceparent %q, want the hook's %q", req.Method, req.Path, got, parentA)
		}
		if got := req.Header.Get("tracestate"); got != "vendor=from-hook" {
			t.Errorf("%s %s: tracestate %q, want the hook's", req.Method, req.Path, got)
		}
		if _, ok := req.Body["trace"]; ok {
			t.Errorf("the trace field was sent with the headers: %v", req.Body)
		}
	}
	if n := len(fake.received()); n != 2 {
		t.Fatalf("want the call and the stream sent, got %d requests", n)
	}
}

func TestARequestsOwnTraceParentWinsOverTheHook(t *testing.T) {
	fake := startFakeTether(t, always(200, okAnswer))
	client := tether.New(fake.path, tether.WithTraceContext(fromContext))
	ctx := context.WithValue(within(t, 10*time.Second), spanKey{}, parentA)

	if _, err := client.Call(ctx, tether.Request{Verb: "health", TraceParent: parentB, TraceState: "mine=1"}); err != nil {
		t.Fatal(err)
	}
	// A traceparent without a tracestate wins too: the hook's tracestate belongs to its own.
	if _, err := client.Call(ctx, tether.Request{Verb: "health", TraceParent: parentB}); err != nil {
		t.Fatal(err)
	}
	got := fake.received()
	if got[0].Header.Get("traceparent") != parentB || got[0].Header.Get("tracestate") != "mine=1" {
		t.Errorf("want the request's trace context, got %v", got[0].Header)
	}
	if got[1].Header.Get("traceparent") != parentB || got[1].Header.Values("tracestate") != nil {
		t.Errorf("want the request's traceparent and no tracestate, got %v", got[1].Header)
	}
}

func TestNoTraceHeadersWithoutATraceContext(t *testing.T) {
	fake := startFakeTether(t, always(200, okAnswer))
	ctx := within(t, 10*time.Second)
	// No hook; a hook with no span in ctx; a request with only a tracestate.
	for _, client := range []*tether.Client{tether.New(fake.path), tether.New(fake.path, tether.WithTraceContext(fromContext))} {
		for _, req := range []tether.Request{{Verb: "health"}, {Verb: "health", TraceState: "orphan=1"}} {
			if _, err := client.Call(ctx, req); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, req := range fake.received() {
		if req.Header.Values("traceparent") != nil || req.Header.Values("tracestate") != nil {
			t.Errorf("request %d: trace headers sent without a traceparent: %v", i, req.Header)
		}
	}
}

func TestTheAnswersTraceIDIsOnTheResultTheErrorAndTheStreamsEnd(t *testing.T) {
	streamed := func(events string) reply {
		return reply{status: 200, contentType: "application/x-ndjson", body: events}
	}
	answers := []reply{
		{status: 200, body: okAnswer},
		{status: 504, body: `{"error":{"code":"timeout","message":"m","retryable":false},"request_id":"r1","trace_id":"` + traceB + `"}`},
		streamed(`{"event":"stdout","data":"hi"}` + "\n" + `{"event":"exit","exit_status":0,"exit_signal":null,"request_id":"r1","trace_id":"` + traceA + `"}` + "\n"),
		streamed(`{"event":"error","error":{"code":"connection_lost","message":"m","retryable":false},"request_id":"r1","trace_id":"` + traceB + `"}` + "\n"),
	}
	fake := startFakeTether(t, func(n int, _ sent) reply { return answers[n] })
	client := tether.New(fake.path)
	ctx := within(t, 10*time.Second)

	res, err := client.Call(ctx, tether.Request{Verb: "health"})
	if err != nil || res.TraceID != traceA {
		t.Fatalf("want a result with trace id %s, got %+v, %v", traceA, res, err)
	}
	_, err = client.Call(ctx, tether.Request{Verb: "health"})
	var e *tether.Error
	if !errors.As(err, &e) || e.TraceID != traceB {
		t.Fatalf("want an *Error with trace id %s, got %+v", traceB, err)
	}
	end := func() (tether.Event, error) {
		stream, err := client.Stream(ctx, tether.Request{Verb: "health"})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		for {
			ev, err := stream.Next()
			if err != nil || ev.Kind == "exit" {
				return ev, err
			}
		}
	}
	if ev, err := end(); err != nil || ev.Result.TraceID != traceA {
		t.Fatalf("want an exit event with trace id %s, got %+v, %v", traceA, ev, err)
	}
	if _, err := end(); !errors.As(err, &e) || e.TraceID != traceB || !errors.Is(err, tether.ErrConnectionLost) {
		t.Fatalf("want the error event's *Error with trace id %s, got %+v", traceB, err)
	}
}

func TestTurnAsksTheHookOnEveryAttempt(t *testing.T) {
	fake := startFakeTether(t, func(n int, _ sent) reply {
		if n < 1 {
			return reply{status: 503, body: `{"error":{"code":"shutting_down","message":"m","retryable":true},"request_id":"x"}`}
		}
		return reply{status: 200, body: okAnswer}
	})
	parents := []string{parentA, parentB}
	asked := 0
	client := tether.New(fake.path, tether.WithBackoff(time.Millisecond, time.Millisecond),
		tether.WithTraceContext(func(context.Context) (string, string) {
			asked++
			return parents[(asked-1)%len(parents)], ""
		}))
	if _, err := client.Turn(within(t, 10*time.Second), session, tether.NewTurnID(), "hi"); err != nil {
		t.Fatal(err)
	}
	got := fake.received()
	if len(got) != 2 || got[0].Header.Get("traceparent") != parentA || got[1].Header.Get("traceparent") != parentB {
		t.Fatalf("want each attempt sent with the hook's traceparent of the moment, got %+v", got)
	}
}

// traceID is the shape of a W3C trace id.
var traceID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestTetherAnswersWithTheRequestsTraceID(t *testing.T) {
	d := sharedDemo(t)
	client := tether.New(d.socket, tether.WithTraceContext(fromContext))
	ctx := context.WithValue(within(t, 30*time.Second), spanKey{}, parentA)
	arg := "trace-" + tether.NewTurnID()[:8]

	res, err := client.Call(ctx, tether.Request{Verb: "health", Args: []string{arg}})
	if err != nil || res.TraceID != traceA {
		t.Fatalf("want the hook's trace id %s in the answer, got %+v, %v", traceA, res, err)
	}
	// The same trace id in tether's log line for the call, and in the laptop's audit line
	// (tether hands the trace on to tether shim in-band).
	if !strings.Contains(d.log(), `trace_id="`+traceA+`"`) && !strings.Contains(d.log(), `"trace_id":"`+traceA+`"`) {
		t.Errorf("tether's log has no call line with trace_id %s:\n%s", traceA, d.logTail())
	}
	audit, err := os.ReadFile(filepath.Join(d.laptop(t), "audit.jsonl"))
	if err != nil || !strings.Contains(string(audit), `"trace_id":"`+traceA+`"`) {
		t.Errorf("the shim's audit log has no line with trace_id %s (%v):\n%s", traceA, err, audit)
	}
	stream, err := client.Stream(ctx, tether.Request{Verb: "reset", Args: []string{arg}, TraceParent: parentB})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var ev tether.Event
	for ev.Kind != "exit" {
		if ev, err = stream.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if ev.Result.TraceID != traceB {
		t.Fatalf("want the request's trace id %s on the exit event, got %+v", traceB, ev.Result)
	}
	// Without a trace context, tether starts a trace and says its id.
	res, err = d.client.Call(within(t, 30*time.Second), tether.Request{Verb: "health", Args: []string{arg + "-own"}})
	if err != nil || !traceID.MatchString(res.TraceID) || res.TraceID == traceA || res.TraceID == traceB {
		t.Fatalf("want a trace id of tether's own, got %+v, %v", res, err)
	}
}
