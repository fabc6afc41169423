package tether_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

const secret = "ghp_s3cr3t-value-never-shown"

func TestCredentialsAreSentAsTheirJSONField(t *testing.T) {
	fake := startFakeTether(t, always(200, okAnswer))
	client := tether.New(fake.path)
	ctx := within(t, 10*time.Second)
	credentials := map[string]string{"GITHUB_TOKEN": secret, "JIRA_TOKEN": "j"}
	if _, err := client.Call(ctx, tether.Request{Verb: "run-turn", Credentials: credentials}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Call(ctx, tether.Request{Verb: "run-turn"}); err != nil {
		t.Fatal(err)
	}
	got := fake.received()
	want := map[string]any{"GITHUB_TOKEN": secret, "JIRA_TOKEN": "j"}
	if !reflect.DeepEqual(got[0].Body["credentials"], want) {
		t.Fatalf("credentials sent as %#v, want %v", got[0].Body["credentials"], want)
	}
	if _, ok := got[1].Body["credentials"]; ok {
		t.Fatalf("a call without credentials sent the field: %v", got[1].Body)
	}
}

func TestFormattingARequestNeverShowsItsCredentials(t *testing.T) {
	req := tether.TurnRequest(session, tether.NewTurnID(), "hi")
	req.Credentials = map[string]string{"GITHUB_TOKEN": secret}
	var shown []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		shown = append(shown, fmt.Sprintf(verb, req), fmt.Sprintf(verb, &req), fmt.Sprintf(verb, req.Credentials))
	}
	shown = append(shown, fmt.Sprint(req), fmt.Sprintln(req), req.Credentials.String())
	encoded, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	shown = append(shown, string(encoded))
	for _, s := range shown {
		if strings.Contains(s, secret) || strings.Contains(strings.ToLower(s), fmt.Sprintf("%x", secret)) {
			t.Fatalf("a credential's value is shown: %s", s)
		}
	}
	// The names are not secret and help whoever reads a log.
	if s := fmt.Sprintf("%+v", req); !strings.Contains(s, "GITHUB_TOKEN") {
		t.Fatalf("the credential's name is not shown: %s", s)
	}
}

func TestTurnMintsFreshCredentialsForEveryAttempt(t *testing.T) {
	fake := startFakeTether(t, func(n int, _ sent) reply {
		if n < 2 {
			return reply{status: 503, body: `{"error":{"code":"connection_lost","message":"m","retryable":false},"request_id":"x"}`}
		}
		return reply{status: 200, body: okAnswer}
	})
	client := tether.New(fake.path, tether.WithBackoff(time.Millisecond, time.Millisecond))
	minted := 0
	mint := func(ctx context.Context) (map[string]string, error) {
		minted++
		return map[string]string{"PALIAD_JWT": fmt.Sprintf("jwt-%d", minted)}, nil
	}
	if _, err := client.Turn(within(t, 10*time.Second), session, tether.NewTurnID(), "hi", tether.WithCredentialsFunc(mint)); err != nil {
		t.Fatal(err)
	}
	got := fake.received()
	if len(got) != 3 {
		t.Fatalf("want three attempts, got %d", len(got))
	}
	for i, req := range got {
		want := map[string]any{"PALIAD_JWT": fmt.Sprintf("jwt-%d", i+1)}
		if !reflect.DeepEqual(req.Body["credentials"], want) {
			t.Errorf("attempt %d sent credentials %v, want %v", i+1, req.Body["credentials"], want)
		}
		if !reflect.DeepEqual(req.Body["args"], got[0].Body["args"]) || req.Body["request_id"] != got[0].Body["request_id"] {
			t.Errorf("attempt %d is not the same turn: %v", i+1, req.Body)
		}
	}
}

func TestTurnSendsTheSameCredentialsOnEveryAttempt(t *testing.T) {
	fake := startFakeTether(t, func(n int, _ sent) reply {
		if n < 1 {
			return reply{status: 429, body: `{"error":{"code":"busy","message":"m","retryable":true},"request_id":"x"}`}
		}
		return reply{status: 200, body: okAnswer}
	})
	client := tether.New(fake.path, tether.WithBackoff(time.Millisecond, time.Millisecond))
	credentials := map[string]string{"GITHUB_TOKEN": secret}
	if _, err := client.Turn(within(t, 10*time.Second), session, tether.NewTurnID(), "hi", tether.WithCredentials(credentials)); err != nil {
		t.Fatal(err)
	}
	for i, req := range fake.received() {
		if !reflect.DeepEqual(req.Body["credentials"], map[string]any{"GITHUB_TOKEN": secret}) {
			t.Errorf("attempt %d sent credentials %v", i+1, req.Body["credentials"])
		}
	}
}

func TestTurnIsNotSentWhenItsCredentialsCannotBeHad(t *testing.T) {
	fake := startFakeTether(t, always(200, okAnswer))
	client := tether.New(fake.path)
	noToken := errors.New("the token service is down")
	mint := func(context.Context) (map[string]string, error) { return nil, noToken }
	_, err := client.Turn(within(t, 10*time.Second), session, tether.NewTurnID(), "hi", tether.WithCredentialsFunc(mint))
	if !errors.Is(err, noToken) || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("want the credentials function's error, got %v", err)
	}
	if n := len(fake.received()); n != 0 {
		t.Fatalf("the turn was sent without its credentials: %d requests", n)
	}
}

func TestACachedVerbRefusesCredentialsWithoutShowingThem(t *testing.T) {
	d := sharedDemo(t)
	// health has a cache_ttl: a shared result must not depend on one caller's secrets.
	_, err := d.client.Call(within(t, 30*time.Second), tether.Request{
		Verb: "health", Args: []string{"creds-" + tether.NewTurnID()[:8]}, Credentials: map[string]string{"GITHUB_TOKEN": secret},
	})
	e := wantCode(t, err, tether.ErrBadRequest, 400, false)
	if !strings.Contains(strings.ToLower(e.Message), "cache") {
		t.Errorf("the refusal does not say the verb is cached: %v", e)
	}
	if strings.Contains(e.Error(), secret) {
		t.Fatalf("the refusal shows the credential: %v", e)
	}
	if logged := d.log(); strings.Contains(logged, secret) {
		t.Fatal("tether's log has the credential's value")
	}
}
