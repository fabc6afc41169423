package tether_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

func TestATurnSentTwiceRunsOnceAndAnswersTheSame(t *testing.T) {
	d := sharedDemo(t)
	turn, message := tether.NewTurnID(), "once, please"
	first, err := d.client.Turn(within(t, 60*time.Second), session, turn, message)
	if err != nil {
		t.Fatal(err)
	}
	second, err := d.client.Turn(within(t, 60*time.Second), session, turn, message)
	if err != nil {
		t.Fatal(err)
	}
	if first.Stdout != answer(message) || second.Stdout != first.Stdout || second.ExitStatus != first.ExitStatus {
		t.Fatalf("want the same answer twice, got %+v and %+v", first, second)
	}
	got := d.outcomes(t, turn)
	t.Logf("the laptop's audit log for the turn: %v", got)
	if got["ran"] != 1 || got["replayed"] != 1 || len(got) != 2 {
		t.Fatalf("want the turn run once and replayed once on the laptop, got %v", got)
	}
}

func TestATurnAcrossACutConnectionGetsItsAnswerOnce(t *testing.T) {
	d := sharedDemo(t)
	held := d.holdSession(t)
	link := startProxy(t, d.socket)
	client := tether.New(link.path, tether.WithBackoff(20*time.Millisecond, 100*time.Millisecond))
	turn, message := tether.NewTurnID(), "survive the cut"
	type outcome struct {
		res *tether.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := client.Turn(within(t, 120*time.Second), held.name, turn, message)
		done <- outcome{res, err}
	}()
	// The turn reached the laptop and waits there; the app's connection to tether breaks.
	held.waitQueued(t, 1)
	link.cut()
	// Turn sends the same uuid again on a new connection.
	waitFor(t, "Turn to send the turn again", func() bool { return link.connections() >= 2 || len(done) > 0 })
	held.release()
	got := <-done
	if link.connections() < 2 {
		t.Fatalf("Turn ended without sending the turn again: %+v, %v", got.res, got.err)
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	if got.res.ExitStatus != 0 || got.res.Stdout != answer(message) {
		t.Fatalf("want %q, got %+v", answer(message), got.res)
	}
	// The first send's shim follows the run to its end on the laptop, and writes its audit
	// line then, maybe after the second send's answer came back.
	var counts map[string]int
	waitFor(t, "the first send's audit line", func() bool {
		counts = d.outcomes(t, turn)
		return counts["ran"] >= 1
	})
	t.Logf("the laptop's audit log for the turn: %v; connections to tether: %d", counts, link.connections())
	if counts["ran"] != 1 || counts["attached"]+counts["replayed"] < 1 {
		t.Fatalf("want the turn run exactly once on the laptop and sent again, got %v", counts)
	}
}

func TestTurnReturnsAnErrorThatSendingAgainCannotFixAtOnce(t *testing.T) {
	d := sharedDemo(t)
	start := time.Now()
	_, err := d.client.Turn(within(t, 60*time.Second), "not a session", tether.NewTurnID(), "hi")
	wantCode(t, err, tether.ErrBadRequest, 400, false)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a bad request took %v: it was sent again", took)
	}
}

func TestCancellingTheContextStopsTurnPromptly(t *testing.T) {
	// promptly: well within the smallest back-off, on a loaded machine.
	const promptly = time.Second
	stop := func(t *testing.T, client *tether.Client, session string, sent func(), result *error) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := client.Turn(ctx, session, tether.NewTurnID(), "never mind")
			done <- err
		}()
		sent()
		cancel()
		start := time.Now()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("want context.Canceled, got %v", err)
			}
			t.Logf("Turn returned %v after the cancel", time.Since(start))
			*result = err
		case <-time.After(promptly):
			t.Fatalf("Turn went on for %v after its context was cancelled", promptly)
		}
	}

	t.Run("while the turn runs", func(t *testing.T) {
		d := sharedDemo(t)
		held := d.holdSession(t)
		var err error
		stop(t, d.client, held.name, func() { held.waitQueued(t, 1) }, &err)
	})

	t.Run("while it waits to send again", func(t *testing.T) {
		// Every attempt is answered upstream_unreachable at once, then Turn backs off (5 to
		// 10 s here) before the next.
		offline := startOfflineTether(t)
		client := tether.New(offline.path, tether.WithBackoff(10*time.Second, 10*time.Second))
		var err error
		// Once the first answer has been read, Turn can only be waiting to send again.
		stop(t, client, session, func() { <-offline.answered }, &err)
		if !errors.Is(err, tether.ErrUnreachable) {
			t.Fatalf("want the last attempt's upstream_unreachable with the cancel, got %v", err)
		}
	})
}

func TestTurnSendsTheSameTurnAgainWhileTheLaptopIsOffline(t *testing.T) {
	offline := startOfflineTether(t)
	client := tether.New(offline.path, tether.WithBackoff(10*time.Millisecond, 40*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	turn := tether.NewTurnID()
	done := make(chan error, 1)
	go func() {
		_, err := client.Turn(ctx, session, turn, "are you there?")
		done <- err
	}()
	want := tether.TurnRequest(session, turn, "are you there?")
	for i := 0; i < 3; i++ {
		var got sentCall
		select {
		case got = <-offline.answered:
		case err := <-done:
			t.Fatalf("Turn gave up before attempt %d was answered: %v", i+1, err)
		case <-time.After(readyWithin):
			t.Fatalf("no attempt %d within %v", i+1, readyWithin)
		}
		if got.Verb != "run-turn" || !reflect.DeepEqual(got.Args, want.Args) || got.RequestID != want.RequestID {
			t.Fatalf("attempt %d sent %+v, want the same turn %+v", i+1, got, want)
		}
	}
	cancel()
	// What the app shows: the laptop is offline.
	if err := <-done; !errors.Is(err, tether.ErrUnreachable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("want an error matching ErrUnreachable and context.Canceled, got %v", err)
	}
}

func TestTurnGivesUpWhenTheContextEndsWithTheLastErrorAttached(t *testing.T) {
	d := sharedDemo(t)
	held := d.holdSession(t)
	// Each attempt waits on the laptop until tether's deadline passes: the answer is
	// timeout, and then the context has ended.
	_, err := d.client.Turn(within(t, time.Second), held.name, tether.NewTurnID(), "too late")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, tether.ErrTimeout) {
		t.Fatalf("want an error matching both context.DeadlineExceeded and ErrTimeout, got %v", err)
	}
	var e *tether.Error
	if !errors.As(err, &e) || e.Status != 504 {
		t.Fatalf("want the last attempt's *Error reachable with errors.As, got %v", err)
	}
}
