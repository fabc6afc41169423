package tether_test

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

func TestCallsDecodesTheCallsInFlight(t *testing.T) {
	fake := startFakeTether(t, always(200, `{"calls":[`+
		`{"request_id":"turn-1","target":"mriver","verb":"run-turn","state":"running","age_ms":8123,"queued_ms":2,`+
		`"caller_uid":1000,"stream":true,"abandoned":false,"trace_id":"`+traceA+`"},`+
		`{"request_id":"r2","target":"mriver","verb":"health","state":"queued","age_ms":40.5,"queued_ms":40.5,`+
		`"caller_uid":null,"stream":false,"abandoned":true,"trace_id":"`+traceB+`"}],"total":7,"shown":2}`))
	list, err := tether.New(fake.path).Calls(within(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := &tether.CallList{Total: 7, Shown: 2, Calls: []tether.CallInfo{
		{RequestID: "turn-1", Target: "mriver", Verb: "run-turn", State: tether.CallRunning, Age: 8123 * time.Millisecond,
			Queued: 2 * time.Millisecond, CallerUID: 1000, Stream: true, TraceID: traceA},
		{RequestID: "r2", Target: "mriver", Verb: "health", State: tether.CallQueued, Age: 40500 * time.Microsecond,
			Queued: 40500 * time.Microsecond, CallerUID: -1, Abandoned: true, TraceID: traceB},
	}}
	if !reflect.DeepEqual(list, want) {
		t.Fatalf("got %+v\nwant %+v", list, want)
	}
	if req := fake.only(t); req.Method != "GET" || req.Path != "/v1/calls" || req.Body != nil {
		t.Fatalf("want GET /v1/calls without a body, sent %+v", req)
	}
}

func TestCancelSaysWhatItCancelled(t *testing.T) {
	fake := startFakeTether(t, always(200, `{"cancelled":[`+
		`{"request_id":"turn-1","state_before":"running","sent":true},{"request_id":"turn-1","state_before":"queued","sent":false}]}`))
	got, err := tether.New(fake.path).Cancel(within(t, 10*time.Second), "turn-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []tether.Cancelled{{RequestID: "turn-1", StateBefore: "running", Sent: true}, {RequestID: "turn-1", StateBefore: "queued"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if req := fake.only(t); req.Method != "DELETE" || req.Path != "/v1/calls/turn-1" {
		t.Fatalf("want DELETE /v1/calls/turn-1, sent %s %s", req.Method, req.Path)
	}
}

func TestCancelOfNoCallIsNotFound(t *testing.T) {
	fake := startFakeTether(t, always(404, `{"error":{"code":"not_found","message":"no call in flight has request id gone","retryable":false},"request_id":null}`))
	client := tether.New(fake.path)
	_, err := client.Cancel(within(t, 10*time.Second), "gone")
	wantCode(t, err, tether.ErrNotFound, 404, false)
	if errors.Is(err, tether.ErrUnknownTarget) {
		t.Fatal("not_found matches unknown_target, another 404")
	}
	// An id is needed: DELETE /v1/calls/ is no call's address.
	if _, err := client.Cancel(within(t, 10*time.Second), ""); err == nil || !strings.Contains(err.Error(), "request id") {
		t.Fatalf("want an error asking for the request id, got %v", err)
	}
	if n := len(fake.received()); n != 1 {
		t.Fatalf("an empty request id was sent: %d requests", n)
	}
}

func TestACancelledTurnIsNotSentAgain(t *testing.T) {
	fake := startFakeTether(t, always(409, `{"error":{"code":"cancelled","message":"an operator cancelled the call after it was sent: the command may have run","retryable":false},"request_id":"turn-x"}`))
	client := tether.New(fake.path, tether.WithBackoff(time.Millisecond, time.Millisecond))
	_, err := client.Turn(within(t, 10*time.Second), session, tether.NewTurnID(), "stop me")
	wantCode(t, err, tether.ErrCancelled, 409, false)
	fake.only(t)
}

func TestAnOperatorListsAndCancelsARunningTurn(t *testing.T) {
	d := sharedDemo(t)
	held := d.holdSession(t)
	turn := tether.TurnRequest(held.name, tether.NewTurnID(), "cancel me")
	turn.TraceParent = parentA
	done := make(chan error, 1)
	go func() {
		_, err := d.client.Call(within(t, 120*time.Second), turn)
		done <- err
	}()
	held.waitQueued(t, 1) // it reached the laptop: running

	var listed tether.CallInfo
	waitFor(t, "the turn listed as running", func() bool {
		listed, _ = inFlight(t, d, turn.RequestID)
		return listed.State == tether.CallRunning
	})
	want := tether.CallInfo{RequestID: turn.RequestID, Target: "demo", Verb: "run-turn", State: tether.CallRunning,
		CallerUID: os.Getuid(), TraceID: traceA}
	got := listed
	got.Age, got.Queued = 0, 0
	if !reflect.DeepEqual(got, want) || listed.Age < listed.Queued {
		t.Fatalf("listed %+v, want %+v", listed, want)
	}

	cancelled, err := d.client.Cancel(within(t, 10*time.Second), turn.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cancelled, []tether.Cancelled{{RequestID: turn.RequestID, StateBefore: tether.CallRunning, Sent: true}}) {
		t.Fatalf("cancelled %+v", cancelled)
	}
	e := wantCode(t, <-done, tether.ErrCancelled, 409, false)
	if !strings.Contains(e.Message, "may have run") {
		t.Fatalf("the caller of a cancelled running call is not told the command may have run: %q", e.Message)
	}
	waitFor(t, "the cancelled turn gone from the list", func() bool {
		_, found := inFlight(t, d, turn.RequestID)
		return !found
	})
	_, err = d.client.Cancel(within(t, 10*time.Second), turn.RequestID)
	wantCode(t, err, tether.ErrNotFound, 404, false)
}

// inFlight is the demo's call in flight with request id id, if it lists one.
func inFlight(t *testing.T, d *demo, id string) (tether.CallInfo, bool) {
	t.Helper()
	list, err := d.client.Calls(within(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range list.Calls {
		if call.RequestID == id {
			return call, true
		}
	}
	return tether.CallInfo{}, false
}
