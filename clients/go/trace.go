package tether

import (
	"context"
	"net/http"
)

// WithTraceContext sets the hook that gives each call (Call, Stream, every attempt of Turn)
// its W3C trace context from the call's ctx: the traceparent and tracestate headers to send
// (docs/rpc.md, trace context). An empty traceparent sends neither, and tether starts a trace
// of its own; a Request's own TraceParent wins over the hook. The client checks nothing
// else: tether ignores an invalid one. To take them from OpenTelemetry, see the README.
func WithTraceContext(from func(ctx context.Context) (traceparent, tracestate string)) Option {
	return func(c *Client) { c.traceContext = from }
}

// traceHeaders are the trace context headers for req: its own, else the hook's, else none.
// A tracestate goes only with a traceparent: alone, it means nothing.
func (c *Client) traceHeaders(ctx context.Context, req Request) http.Header {
	parent, state := req.TraceParent, req.TraceState
	if parent == "" && c.traceContext != nil {
		parent, state = c.traceContext(ctx)
	}
	if parent == "" {
		return nil
	}
	header := http.Header{"Traceparent": {parent}}
	if state != "" {
		header.Set("Tracestate", state)
	}
	return header
}
