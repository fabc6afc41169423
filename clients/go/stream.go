package tether

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// ErrStreamCut is wrapped by the error a Stream returns when its body ends without an exit
// or error event: the connection to tether broke, and the command may have run (treat it like
// ErrConnectionLost). It wraps io.ErrUnexpectedEOF too.
var ErrStreamCut = fmt.Errorf("tether: the stream ended without an exit or error event: %w", io.ErrUnexpectedEOF)

// Event is one event of a streamed call (docs/rpc.md#streamed-calls).
type Event struct {
	// Kind is "stdout", "stderr", "exit" or "error".
	Kind string
	// Data is a piece of output ("stdout", "stderr"); the error's message for "error".
	Data string
	// Result is how the command ended, on "exit" only; its Stdout and Stderr are empty. Its
	// TraceID is the call's (an error event's *Error carries it too).
	Result *Result
}

// Stream is a streamed call's events, read with Next. Close it when done.
type Stream struct {
	body   io.ReadCloser
	lines  *bufio.Reader
	client *Client
	ctx    context.Context
	done   func()
	ended  bool
	once   sync.Once
}

// Stream runs req and returns its events as they arrive. Errors found before the command
// was sent come back here, as an *Error; once it returns, the command was sent. ctx's
// deadline is the call's timeout_ms, and cancelling ctx hangs up (the remote command runs on).
func (c *Client) Stream(ctx context.Context, req Request) (*Stream, error) {
	resp, done, err := c.exchange(ctx, http.MethodPost, "/v1/call", c.traceHeaders(ctx, req), req.body(true))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer done()
		defer drain(resp.Body)
		return nil, readError(resp)
	}
	return &Stream{body: resp.Body, lines: bufio.NewReader(resp.Body), client: c, ctx: ctx, done: done}, nil
}

// Next returns the next event. After the exit event it returns io.EOF. An error event comes
// back as its Event and its *Error (then io.EOF); a body that ends without either returns an
// error wrapping ErrStreamCut; a cancelled ctx returns its error.
func (s *Stream) Next() (Event, error) {
	if s.ended {
		return Event{}, io.EOF
	}
	line, err := s.lines.ReadBytes('\n')
	if err != nil {
		s.end(false)
		if s.ctx.Err() != nil {
			return Event{}, s.client.transportError(s.ctx, err)
		}
		return Event{}, fmt.Errorf("%w (%v)", ErrStreamCut, err)
	}
	var w wire
	if err := json.Unmarshal(line, &w); err != nil {
		s.end(false)
		return Event{}, fmt.Errorf("tether: a stream event is not JSON (%v): %q", err, line)
	}
	switch w.Event {
	case "stdout", "stderr":
		return Event{Kind: w.Event, Data: w.Data}, nil
	case "exit":
		s.end(true)
		return Event{Kind: w.Event, Result: w.result()}, nil
	case "error":
		s.end(true)
		if w.Error == nil {
			return Event{Kind: w.Event}, fmt.Errorf("tether: an error event without its error: %q", line)
		}
		return Event{Kind: w.Event, Data: w.Error.Message}, w.asError(http.StatusOK)
	default:
		s.end(false)
		return Event{}, fmt.Errorf("tether: unknown stream event %q", w.Event)
	}
}

// Close hangs up. A stream read to its end needs no Close, but Close is always safe.
func (s *Stream) Close() error {
	s.end(false)
	return nil
}

// end marks the stream over and lets its connection go: back to the pool after a terminal
// event (nothing follows it), else closed.
func (s *Stream) end(terminal bool) {
	s.ended = true
	s.once.Do(func() {
		if terminal {
			drain(s.body)
		} else {
			_ = s.body.Close()
		}
		s.done()
	})
}
