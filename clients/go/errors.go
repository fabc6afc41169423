package tether

import (
	"errors"
	"fmt"
)

// Error is an error tether answered (docs/rpc.md#errors), or the error event that ended a
// stream. Match it by code with errors.Is and the sentinels below.
type Error struct {
	// Code is stable: one of the codes in docs/rpc.md#errors.
	Code string
	// Message is for people; it may change between versions.
	Message string
	// Retryable says sending the same request again is safe and may succeed.
	Retryable bool
	// Status is the answer's HTTP status; 200 for the error event of a stream.
	Status int
	// RequestID is the request's id, or the one tether made up ("" when none was read).
	RequestID string
	// TraceID is the call's W3C trace id (32 hex digits), the one tether logged the call
	// under; "" when the answer carried none (an error found before the call had one).
	TraceID string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "tether: " + e.Code
	}
	return fmt.Sprintf("tether: %s: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrUnreachable) holds for every upstream_unreachable answer.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// The sentinels, one per code; compare with errors.Is, never ==.
var (
	ErrBadRequest            = &Error{Code: "bad_request"}
	ErrVerbNotAllowed        = &Error{Code: "verb_not_allowed"}
	ErrForbidden             = &Error{Code: "forbidden"}
	ErrUnknownTarget         = &Error{Code: "unknown_target"}
	ErrPayloadTooLarge       = &Error{Code: "payload_too_large"}
	ErrBusy                  = &Error{Code: "busy"}
	ErrUpstreamAuthFailed    = &Error{Code: "upstream_auth_failed"}
	ErrHostKeyMismatch       = &Error{Code: "host_key_mismatch"}
	ErrUnreachable           = &Error{Code: "upstream_unreachable"}
	ErrUpstreamMisconfigured = &Error{Code: "upstream_misconfigured"}
	ErrConnectionLost        = &Error{Code: "connection_lost"}
	ErrShuttingDown          = &Error{Code: "shutting_down"}
	ErrTimeout               = &Error{Code: "timeout"}
	ErrInternal              = &Error{Code: "internal"}
	// ErrCancelled: an operator cancelled the call (DELETE /v1/calls/{id}, `tether cancel`).
	// When it had been sent, the command may have run; it is never retryable.
	ErrCancelled = &Error{Code: "cancelled"}
	// ErrNotFound: Cancel matched no call in flight (it ended, or the id is wrong).
	ErrNotFound = &Error{Code: "not_found"}
)

// IsRetryable reports whether err is an *Error that tether marked retryable: sending the
// same request again is safe. Anything else (a failure to reach tether included) is false.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}
