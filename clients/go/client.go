package tether

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// DefaultSocket is tether's socket when neither New's argument nor $TETHER_SOCKET names one.
const DefaultSocket = "/run/tether/tether.sock"

const (
	// defaultIdleTimeout closes kept-alive connections before tether does (its
	// server.idle_timeout is 120 s), so a request never goes out on a closing connection.
	defaultIdleTimeout = 90 * time.Second
	// defaultGrace is how long past the context's deadline a call waits for tether's own
	// answer (usually `timeout`, due at that same deadline).
	defaultGrace      = 2 * time.Second
	defaultBackoffMin = 200 * time.Millisecond
	defaultBackoffMax = 5 * time.Second
	// maxIdleConns bounds the kept-alive connections to the one socket.
	maxIdleConns = 64
)

// Client talks to one tether socket. It is safe for concurrent use; keep one per process.
type Client struct {
	socket     string
	http       *http.Client
	grace      time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	// traceContext is WithTraceContext's hook, or nil.
	traceContext func(ctx context.Context) (traceparent, tracestate string)

	mu     sync.Mutex
	jitter *rand.Rand
}

// An Option changes a Client's defaults.
type Option func(*Client)

// WithIdleTimeout sets how long an unused kept-alive connection stays open (default 90 s).
// Keep it below tether's server.idle_timeout (120 s by default).
func WithIdleTimeout(d time.Duration) Option {
	return func(c *Client) { c.transport().IdleConnTimeout = d }
}

// WithDeadlineGrace sets how long a call waits past its context's deadline for tether's
// answer (default 2 s). tether ends the call at that deadline with `timeout`; the grace lets
// that answer arrive instead of a bare context.DeadlineExceeded.
func WithDeadlineGrace(d time.Duration) Option {
	return func(c *Client) { c.grace = d }
}

// WithBackoff sets Turn's waits between attempts: the first is about min, each next one
// doubles, up to max (defaults 200 ms and 5 s). Each wait is jittered down by up to half.
func WithBackoff(min, max time.Duration) Option {
	return func(c *Client) { c.backoffMin, c.backoffMax = min, max }
}

// New returns a client for the socket at path socket: when empty, $TETHER_SOCKET, else
// DefaultSocket. Nothing is dialled until the first call.
func New(socket string, opts ...Option) *Client {
	if socket == "" {
		socket = os.Getenv("TETHER_SOCKET")
	}
	if socket == "" {
		socket = DefaultSocket
	}
	dialer := &net.Dialer{}
	c := &Client{
		socket: socket,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return dialer.DialContext(ctx, "unix", socket)
			},
			IdleConnTimeout:     defaultIdleTimeout,
			MaxIdleConns:        maxIdleConns,
			MaxIdleConnsPerHost: maxIdleConns,
			DisableCompression:  true,
		}},
		grace:      defaultGrace,
		backoffMin: defaultBackoffMin,
		backoffMax: defaultBackoffMax,
		jitter:     rand.New(rand.NewSource(time.Now().UnixNano())),
	}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

func (c *Client) transport() *http.Transport {
	return c.http.Transport.(*http.Transport)
}

// exchange sends one request, with header's fields added, and returns tether's response,
// whatever its status. With a body, ctx's deadline is also sent, as `timeout_ms`. The
// response's context outlives ctx's deadline by the grace (a cancelled ctx still ends it at
// once); call done when finished with the response.
func (c *Client) exchange(ctx context.Context, method, path string, header http.Header, body map[string]any) (resp *http.Response, done func(), err error) {
	var payload []byte
	if body != nil {
		if deadline, ok := ctx.Deadline(); ok {
			left := time.Until(deadline)
			if left <= 0 {
				return nil, nil, fmt.Errorf("tether: not sent, the deadline has passed: %w", context.DeadlineExceeded)
			}
			body["timeout_ms"] = int64(math.Ceil(float64(left) / float64(time.Millisecond)))
		}
		if payload, err = json.Marshal(body); err != nil {
			return nil, nil, fmt.Errorf("tether: cannot encode the request: %w", err)
		}
	}
	hctx, done := c.withGrace(ctx)
	req, err := http.NewRequestWithContext(hctx, method, "http://tether"+path, bytes.NewReader(payload))
	if err != nil {
		done()
		return nil, nil, fmt.Errorf("tether: %w", err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err = c.http.Do(req)
	if err != nil {
		done()
		return nil, nil, c.transportError(ctx, err)
	}
	return resp, done, nil
}

// withGrace returns a context with ctx's values that a cancellation of ctx ends at once, but
// that ends only c.grace after ctx's deadline. Its cancel function releases it.
func (c *Client) withGrace(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	hctx, cancel := context.WithDeadline(valuesOf{ctx}, deadline.Add(c.grace))
	go func() {
		select {
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cancel()
			}
		case <-hctx.Done():
		}
	}()
	return hctx, cancel
}

// valuesOf is a context with another's values but none of its deadline or cancellation.
type valuesOf struct{ parent context.Context }

func (valuesOf) Deadline() (time.Time, bool) { return time.Time{}, false }
func (valuesOf) Done() <-chan struct{}       { return nil }
func (valuesOf) Err() error                  { return nil }
func (v valuesOf) Value(key any) any         { return v.parent.Value(key) }

// transportError says what went wrong between the client and tether itself.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return fmt.Errorf("tether: no answer by the deadline plus %v: %w", c.grace, ctxErr)
		}
		return fmt.Errorf("tether: %w", ctxErr)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("tether: cannot connect to the sidecar at %s (nothing was sent): %w", c.socket, err)
	}
	return fmt.Errorf("tether: the connection to the sidecar at %s broke: %w", c.socket, err)
}
