// Package tether is a client for tether's RPC on its Unix socket (docs/rpc.md in the tether
// repository): run an allowlisted verb on the remote, buffered ([Client.Call]) or as the
// output arrives ([Client.Stream]); read the cached health of every target
// ([Client.Health]); run a paliadin turn exactly once ([Client.Turn]); and list and cancel
// the calls in flight ([Client.Calls], [Client.Cancel]).
//
// A call can carry a W3C trace context ([WithTraceContext], [Request.TraceParent]) and
// secrets for the verb program on the laptop ([Request.Credentials], [WithCredentialsFunc]),
// which formatting never shows.
//
// Errors from tether are [*Error] values; match them with [errors.Is] against the sentinels
// ([ErrUnreachable] means the laptop is asleep or offline) and ask [IsRetryable] whether the
// same request may be sent again.
//
// The package uses the standard library only.
package tether
