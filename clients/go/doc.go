// Package tether is a client for tether's RPC on its Unix socket (docs/rpc.md in the tether
// repository): run an allowlisted verb on the remote, buffered ([Client.Call]) or as the
// output arrives ([Client.Stream]); read the cached health of every target
// ([Client.Health]); and run a paliadin turn exactly once ([Client.Turn]).
//
// Errors from tether are [*Error] values; match them with [errors.Is] against the sentinels
// ([ErrUnreachable] means the laptop is asleep or offline) and ask [IsRetryable] whether the
// same request may be sent again.
//
// The package uses the standard library only.
package tether
