package tether

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"
)

// TurnRequest is the run-turn call for a turn: run-turn SESSION UUID MESSAGE-BASE64, with
// request id "turn-UUID". Use it to stream a turn with Stream.
func TurnRequest(session, uuid, message string) Request {
	return Request{
		Verb:      "run-turn",
		Args:      []string{session, uuid, base64.StdEncoding.EncodeToString([]byte(message))},
		RequestID: "turn-" + uuid,
	}
}

// Turn runs one paliadin turn, identified by uuid, in session, and returns its answer. It
// keeps trying until it has the answer or ctx ends, so give ctx a deadline.
//
// When an attempt ends with ErrConnectionLost, ErrTimeout, ErrShuttingDown, ErrUnreachable
// or ErrBusy, or cannot reach tether at all, Turn waits (a jittered back-off, see
// WithBackoff) and sends the same turn again, with the same uuid. Any other *Error is
// returned at once. When ctx ends first, the error wraps ctx's error and also matches the
// last attempt's error (errors.Is(err, ErrUnreachable): the laptop is offline).
//
// Exactly once: with `tether shim` on the laptop and run-turn's key_arg set to the uuid
// (docs/shim.md), a turn sent again runs nothing: the shim attaches to the running turn or
// replays its recorded answer. Every attempt then gets the output of the one run, and the
// turn runs exactly once however often Turn sends it.
//
// Without the shim, tether runs each send at most once (run-turn is not idempotent), but a
// send again after ErrConnectionLost or ErrTimeout, or after the connection to tether broke
// mid-call, may run the turn a second time: the first send may have run.
//
// The options give the turn credentials (WithCredentials, WithCredentialsFunc). The trace
// context, if any, comes from the client's WithTraceContext hook, asked on every attempt.
func (c *Client) Turn(ctx context.Context, session, uuid, message string, opts ...TurnOption) (*Result, error) {
	var turn turnOptions
	for _, opt := range opts {
		opt(&turn)
	}
	req := TurnRequest(session, uuid, message)
	wait := c.backoffMin
	var last error // the last attempt's error that is not just ctx ending
	for {
		if turn.credentials != nil {
			credentials, err := turn.credentials(ctx)
			if err != nil {
				err = fmt.Errorf("tether: the turn's credentials function failed, so this attempt was not sent: %w", err)
				return nil, turnError(ctx, err, last)
			}
			req.Credentials = credentials
		}
		result, err := c.Call(ctx, req)
		if err == nil {
			return result, nil
		}
		if answered(err) || (ctx.Err() == nil && !ended(err)) {
			last = err
		}
		if ctx.Err() != nil || !sendAgain(err) {
			return nil, turnError(ctx, err, last)
		}
		select {
		case <-time.After(c.jittered(wait)):
		case <-ctx.Done():
			return nil, turnError(ctx, err, last)
		}
		if wait *= 2; wait > c.backoffMax {
			wait = c.backoffMax
		}
	}
}

// A TurnOption changes how Turn sends its turn.
type TurnOption func(*turnOptions)

type turnOptions struct {
	// credentials gives each attempt its credentials; nil: none.
	credentials func(ctx context.Context) (map[string]string, error)
}

// WithCredentials sends credentials with the turn (Request.Credentials), the same map on
// every attempt. For a short-lived token, use WithCredentialsFunc.
func WithCredentials(credentials map[string]string) TurnOption {
	return WithCredentialsFunc(func(context.Context) (map[string]string, error) { return credentials, nil })
}

// WithCredentialsFunc asks mint for the turn's credentials before every attempt, so a turn
// sent again carries a fresh token (a short-lived JWT that may have expired since the first
// send). Credentials are not part of a turn's identity: the shim still attaches or replays.
// When mint fails, Turn returns its error (wrapped) without sending; mint gets Turn's ctx.
func WithCredentialsFunc(mint func(ctx context.Context) (map[string]string, error)) TurnOption {
	return func(t *turnOptions) { t.credentials = mint }
}

// turnError is Turn's error: err as it is, unless ctx ended after an attempt failed.
func turnError(ctx context.Context, err, last error) error {
	if last == nil || (ctx.Err() == nil && !ended(err)) {
		return err
	}
	cause := ctx.Err()
	if cause == nil {
		cause = err // ctx's deadline has passed; its timer has not fired yet
	}
	return &gaveUp{last: last, ctx: cause}
}

// sendAgain says whether a turn that failed with err may be sent again with the same uuid:
// nothing was sent, or the shim will attach or replay.
func sendAgain(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return !ended(err) // else tether was not reached, or the connection to it broke
	}
	for _, again := range []error{ErrConnectionLost, ErrTimeout, ErrShuttingDown, ErrUnreachable, ErrBusy} {
		if e.Is(again) {
			return true
		}
	}
	return false
}

// answered says err is tether's answer.
func answered(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// ended says err is a context's end, not an attempt's failure.
func ended(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// jittered is d less a random part of up to half of it, so callers that failed together do
// not all come back at once.
func (c *Client) jittered(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return d - time.Duration(c.jitter.Int63n(int64(d)/2+1))
}

// gaveUp is Turn's error when ctx ended: it wraps ctx's error, and matches (errors.Is,
// errors.As) the last attempt's error too.
type gaveUp struct {
	last error
	ctx  error
}

func (g *gaveUp) Error() string {
	return fmt.Sprintf("tether: turn not answered before the context ended (%v); last attempt: %v", g.ctx, g.last)
}

func (g *gaveUp) Unwrap() error        { return g.ctx }
func (g *gaveUp) Is(target error) bool { return errors.Is(g.last, target) }
func (g *gaveUp) As(target any) bool   { return errors.As(g.last, target) }

// NewTurnID returns a random (version 4) UUID: the id an app makes once per user message and
// keeps for every send of that turn.
func NewTurnID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
