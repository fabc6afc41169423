package tether

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Request is one call of a verb: POST /v1/call (docs/rpc.md#request).
type Request struct {
	// Target is the [targets.NAME] to run on; empty for the only or the default target.
	Target string
	// Verb must be in tether's allowlist.
	Verb string
	// Args are the verb's arguments: each 1 to 131072 bytes of [A-Za-z0-9._:,=+/@%-].
	Args []string
	// Stdin is sent to the remote command's standard input (as stdin_base64).
	Stdin []byte
	// RequestID is echoed in the answer and tether's log line; empty: tether makes one up.
	RequestID string
	// TraceParent and TraceState are the call's W3C trace context, sent as the traceparent
	// and tracestate headers (docs/rpc.md, trace context). When TraceParent is set, both win
	// over the client's WithTraceContext hook; when empty, the hook's are sent, if any, and
	// else tether starts a trace. tether ignores an invalid one.
	TraceParent, TraceState string
	// Credentials are secrets for the verb program on the laptop (docs/rpc.md, credentials);
	// formatting a Request never shows their values.
	Credentials Credentials
}

// Result is how the remote command ended. A non-zero ExitStatus is the remote's answer, not
// an error.
type Result struct {
	// ExitStatus is the command's exit status; -1 when it has none (see ExitSignal).
	ExitStatus int
	// ExitSignal is the signal that killed the command ("TERM", "KILL"), else "".
	ExitSignal string
	// Stdout and Stderr are the command's output as UTF-8 text. They are empty in the
	// Result of a stream's exit event: the output came in its events.
	Stdout, Stderr string
	// StdoutTruncated and StderrTruncated say the stream was cut at max_output_bytes.
	StdoutTruncated, StderrTruncated bool
	// Cached says this is a shared copy of another call's result.
	Cached bool
	// Duration is how long the call took inside tether, queueing included.
	Duration time.Duration
	// RequestID is the request's id, or the one tether made up.
	RequestID string
	// Target and Verb are what ran (Target resolved when the request left it out).
	Target, Verb string
	// TraceID is the call's W3C trace id (32 hex digits): the request's traceparent's, or the
	// one tether started. tether's log line and the laptop's audit line carry it too.
	TraceID string
}

// Call runs req and waits for the whole answer. ctx's deadline is sent as the call's
// timeout_ms; when it passes, tether answers ErrTimeout (the command may have run). The
// error is an *Error when tether answered one, else a failure to reach tether.
func (c *Client) Call(ctx context.Context, req Request) (*Result, error) {
	var answer wire
	if err := c.decode(ctx, http.MethodPost, "/v1/call", c.traceHeaders(ctx, req), req.body(false), &answer); err != nil {
		return nil, err
	}
	return answer.result(), nil
}

// decode sends one request and decodes its 200 answer into into; any other answer is
// returned as its *Error.
func (c *Client) decode(ctx context.Context, method, path string, header http.Header, body map[string]any, into any) error {
	resp, done, err := c.exchange(ctx, method, path, header, body)
	if err != nil {
		return err
	}
	defer done()
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return readError(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return c.transportError(ctx, err)
	}
	return nil
}

func (r Request) body(stream bool) map[string]any {
	body := map[string]any{"verb": r.Verb}
	if r.Target != "" {
		body["target"] = r.Target
	}
	if len(r.Args) > 0 {
		body["args"] = r.Args
	}
	if len(r.Stdin) > 0 {
		body["stdin_base64"] = base64.StdEncoding.EncodeToString(r.Stdin)
	}
	if r.RequestID != "" {
		body["request_id"] = r.RequestID
	}
	if len(r.Credentials) > 0 {
		body["credentials"] = map[string]string(r.Credentials)
	}
	if stream {
		body["stream"] = true
	}
	return body
}

// wire is any JSON object tether answers on /v1/call: a buffered answer, an error envelope,
// or one event of a streamed call.
type wire struct {
	Event           string     `json:"event"`
	Data            string     `json:"data"`
	Error           *wireError `json:"error"`
	RequestID       *string    `json:"request_id"`
	Target          string     `json:"target"`
	Verb            string     `json:"verb"`
	ExitStatus      *int       `json:"exit_status"`
	ExitSignal      *string    `json:"exit_signal"`
	Stdout          string     `json:"stdout"`
	Stderr          string     `json:"stderr"`
	StdoutTruncated bool       `json:"stdout_truncated"`
	StderrTruncated bool       `json:"stderr_truncated"`
	DurationMS      float64    `json:"duration_ms"`
	Cached          bool       `json:"cached"`
	TraceID         string     `json:"trace_id"`
}

type wireError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

func (w *wire) result() *Result {
	r := &Result{
		ExitStatus:      -1,
		Stdout:          w.Stdout,
		Stderr:          w.Stderr,
		StdoutTruncated: w.StdoutTruncated,
		StderrTruncated: w.StderrTruncated,
		Cached:          w.Cached,
		Duration:        milliseconds(w.DurationMS),
		RequestID:       w.requestID(),
		Target:          w.Target,
		Verb:            w.Verb,
		TraceID:         w.TraceID,
	}
	if w.ExitStatus != nil {
		r.ExitStatus = *w.ExitStatus
	}
	if w.ExitSignal != nil {
		r.ExitSignal = *w.ExitSignal
	}
	return r
}

// milliseconds is a duration tether wrote in milliseconds.
func milliseconds(ms float64) time.Duration {
	return time.Duration(ms * float64(time.Millisecond))
}

func (w *wire) requestID() string {
	if w.RequestID == nil {
		return ""
	}
	return *w.RequestID
}

// asError is the *Error in an error envelope or error event; status is the HTTP status.
func (w *wire) asError(status int) *Error {
	return &Error{
		Code:      w.Error.Code,
		Message:   w.Error.Message,
		Retryable: w.Error.Retryable,
		Status:    status,
		RequestID: w.requestID(),
		TraceID:   w.TraceID,
	}
}

// readError turns a non-200 answer into an *Error, or says what else came back.
func readError(resp *http.Response) error {
	var envelope wire
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&envelope); err != nil || envelope.Error == nil {
		return fmt.Errorf("tether: HTTP %d without an error envelope; is the socket tether's?", resp.StatusCode)
	}
	return envelope.asError(resp.StatusCode)
}

// drain reads what is left of a body (bounded) and closes it, so the connection is reused.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
