package tether

import (
	"context"
	"net/http"
	"time"
)

// Health is the /v1/health document: tether's cached view of every target, read from memory
// (docs/rpc.md#get-v1health). Asking never touches the network.
type Health struct {
	// Status is the worst of the targets': "up", "unknown", "degraded" or "down".
	Status  string                  `json:"status"`
	Targets map[string]TargetHealth `json:"targets"`
}

// TargetHealth is one target's entry. Status "down" means the laptop is asleep, offline or
// unreachable (or misconfigured: see LastError.Code); calls then fail fast with ErrUnreachable.
type TargetHealth struct {
	Status              string      `json:"status"`
	Connections         int         `json:"connections"`
	ChannelsInUse       int         `json:"channels_in_use"`
	ChannelsCapacity    int         `json:"channels_capacity"`
	Waiting             int         `json:"waiting"`
	Transport           *Probe      `json:"transport"`
	Shim                *Probe      `json:"shim"`
	ConsecutiveFailures int         `json:"consecutive_failures"`
	LastOKAt            *time.Time  `json:"last_ok_at"`
	LastError           *ProbeError `json:"last_error"`
}

// Probe is the last transport or shim probe of a target.
type Probe struct {
	OK        bool      `json:"ok"`
	LatencyMS float64   `json:"latency_ms"`
	CheckedAt time.Time `json:"checked_at"`
	// AgeMS is how long ago the probe ran when tether answered, in milliseconds.
	AgeMS int64 `json:"age_ms"`
}

// ProbeError is the most recent error of a target's probes (or of a call's
// host_key_mismatch / upstream_auth_failed); it is kept after recovery.
type ProbeError struct {
	Code    string    `json:"code"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Health returns the cached health of every target.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var health Health
	if err := c.decode(ctx, http.MethodGet, "/v1/health", nil, nil, &health); err != nil {
		return nil, err
	}
	return &health, nil
}
