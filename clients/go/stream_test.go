package tether_test

import (
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

// collect reads a stream to its end: the stdout pieces joined, the exit event's result, and
// the error that ended it (nil after an exit event and io.EOF).
func collect(t *testing.T, s *tether.Stream) (stdout string, result *tether.Result, err error) {
	t.Helper()
	var out strings.Builder
	for {
		ev, err := s.Next()
		if err == io.EOF {
			return out.String(), result, nil
		}
		if err != nil {
			return out.String(), result, err
		}
		switch ev.Kind {
		case "stdout":
			out.WriteString(ev.Data)
		case "exit":
			result = ev.Result
		}
	}
}

func TestStreamDeliversOutputThenExitThenEOF(t *testing.T) {
	d := sharedDemo(t)
	message := "streamed, with ümlauts"
	s, err := d.client.Stream(within(t, 60*time.Second), tether.TurnRequest(session, tether.NewTurnID(), message))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stdout, res, err := collect(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if stdout != answer(message) {
		t.Fatalf("want %q, got %q", answer(message), stdout)
	}
	if res == nil || res.ExitStatus != 0 || res.Target != "demo" || res.Verb != "run-turn" || res.Stdout != "" {
		t.Fatalf("unexpected exit event %+v", res)
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Next(); err != io.EOF {
			t.Fatalf("after the exit event, want io.EOF, got %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestStreamRefusedBeforeTheCommandIsSentReturnsTheError(t *testing.T) {
	d := sharedDemo(t)
	s, err := d.client.Stream(within(t, 30*time.Second), tether.Request{Verb: "rm", Args: []string{"-rf"}})
	wantCode(t, err, tether.ErrVerbNotAllowed, 403, false)
	if s != nil {
		t.Fatal("a refused call returned a stream")
	}
}

func TestStreamErrorEventIsReturnedAsAnError(t *testing.T) {
	d := sharedDemo(t)
	held := d.holdSession(t)
	// The turn is sent, then waits on the laptop past its 1 s deadline: tether ends the
	// stream with an error event, timeout.
	s, err := d.client.Stream(within(t, time.Second), tether.TurnRequest(held.name, tether.NewTurnID(), "late"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev, err := s.Next()
	if ev.Kind != "error" || ev.Data == "" {
		t.Fatalf("want the error event, got %+v", ev)
	}
	wantCode(t, err, tether.ErrTimeout, 200, false)
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("after the error event, want io.EOF, got %v", err)
	}
}

func TestStreamCutMidWayIsAnError(t *testing.T) {
	d := ownDemo(t)
	// 90,000 control characters come back as about 540 KB of JSON (each is "\u0001"), more
	// than the socket holds: when the demo dies after the first event, most of it is lost.
	message := strings.Repeat("\x01", 90000)
	s, err := d.client.Stream(within(t, 60*time.Second), tether.TurnRequest(session, tether.NewTurnID(), message))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, err := s.Next()
	if err != nil || first.Kind != "stdout" {
		t.Fatalf("want a stdout event first, got %+v, %v", first, err)
	}
	d.signal(t, syscall.SIGKILL)
	rest, res, err := collect(t, s)
	if !errors.Is(err, tether.ErrStreamCut) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("want a cut stream, got %v (exit event %+v)", err, res)
	}
	got := first.Data + rest
	if want := answer(message); len(got) >= len(want) || !strings.HasPrefix(want, got) {
		t.Fatalf("want a strict prefix of the answer (%d bytes), got %d bytes", len(want), len(got))
	}
}
