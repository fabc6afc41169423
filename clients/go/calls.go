package tether

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"
)

// The states of a call in flight (CallInfo.State).
const (
	// CallQueued: waiting for a channel; nothing was sent.
	CallQueued = "queued"
	// CallRunning: the command was sent to the laptop.
	CallRunning = "running"
	// CallStreaming: a streamed call that has sent output.
	CallStreaming = "streaming"
	// CallClosing: the caller was answered; the channel is still being released.
	CallClosing = "closing"
)

// CallList is GET /v1/calls: the calls in flight in tether, oldest first
// (docs/rpc.md, GET /v1/calls). It never holds arguments, stdin, credentials or output.
type CallList struct {
	Calls []CallInfo
	// Total is how many calls are in flight; Shown how many of them Calls holds (tether
	// bounds the list).
	Total, Shown int
}

// CallInfo is one call in flight.
type CallInfo struct {
	RequestID string
	Target    string
	Verb      string
	// State is CallQueued, CallRunning, CallStreaming or CallClosing.
	State string
	// Age is how long ago tether took the call; Queued how long it waited for a channel
	// (so far, while queued).
	Age, Queued time.Duration
	// CallerUID is the calling process's uid; -1 when tether did not say.
	CallerUID int
	// Stream says the call is streamed.
	Stream bool
	// Abandoned says its caller has hung up: the call runs on to its end, its output dropped.
	Abandoned bool
	// TraceID is the call's W3C trace id.
	TraceID string
}

// Cancelled is one call a Cancel stopped.
type Cancelled struct {
	RequestID string `json:"request_id"`
	// StateBefore is the call's state when it was cancelled.
	StateBefore string `json:"state_before"`
	// Sent says the command had been sent: it may have run on the laptop.
	Sent bool `json:"sent"`
}

// Calls lists the calls in flight in tether.
func (c *Client) Calls(ctx context.Context) (*CallList, error) {
	var answer struct {
		Calls []callWire `json:"calls"`
		Total int        `json:"total"`
		Shown int        `json:"shown"`
	}
	if err := c.decode(ctx, http.MethodGet, "/v1/calls", nil, nil, &answer); err != nil {
		return nil, err
	}
	list := &CallList{Calls: make([]CallInfo, len(answer.Calls)), Total: answer.Total, Shown: answer.Shown}
	for i, call := range answer.Calls {
		list.Calls[i] = call.info()
	}
	return list, nil
}

// Cancel stops every call in flight with the request id requestID (ids may repeat), as
// `tether cancel` does: a queued call is never sent; a running one has its channel closed,
// and the command may have run. Each call's own caller gets ErrCancelled. When no call has
// that id, the error matches ErrNotFound.
func (c *Client) Cancel(ctx context.Context, requestID string) ([]Cancelled, error) {
	if requestID == "" {
		return nil, errors.New("tether: Cancel needs the request id of the call to cancel (see Calls)")
	}
	var answer struct {
		Cancelled []Cancelled `json:"cancelled"`
	}
	if err := c.decode(ctx, http.MethodDelete, "/v1/calls/"+url.PathEscape(requestID), nil, nil, &answer); err != nil {
		return nil, err
	}
	return answer.Cancelled, nil
}

// callWire is one entry of GET /v1/calls as tether writes it.
type callWire struct {
	RequestID string  `json:"request_id"`
	Target    string  `json:"target"`
	Verb      string  `json:"verb"`
	State     string  `json:"state"`
	AgeMS     float64 `json:"age_ms"`
	QueuedMS  float64 `json:"queued_ms"`
	CallerUID *int    `json:"caller_uid"`
	Stream    bool    `json:"stream"`
	Abandoned bool    `json:"abandoned"`
	TraceID   string  `json:"trace_id"`
}

func (w callWire) info() CallInfo {
	info := CallInfo{
		RequestID: w.RequestID,
		Target:    w.Target,
		Verb:      w.Verb,
		State:     w.State,
		Age:       milliseconds(w.AgeMS),
		Queued:    milliseconds(w.QueuedMS),
		CallerUID: -1,
		Stream:    w.Stream,
		Abandoned: w.Abandoned,
		TraceID:   w.TraceID,
	}
	if w.CallerUID != nil {
		info.CallerUID = *w.CallerUID
	}
	return info
}
