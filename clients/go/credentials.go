package tether

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Credentials are secrets for one call, by name: a request's "credentials" field
// (docs/rpc.md, credentials). On the laptop, the verb program finds each as a file in
// $CREDENTIALS_DIRECTORY, when its shim config lists the name. Names are
// [A-Z][A-Z0-9_]{0,63}; values are at most 16 KiB, 64 KiB together.
//
// The values never appear when Credentials, or a Request holding them, is formatted with
// fmt (any verb: %v, %+v, %#v, %s, %q, %x, ...) or encoded with encoding/json: both show
// the names only. The client sends the values in the request body and nowhere else.
type Credentials map[string]string

// redacted is what formatting shows for a value.
const redacted = "[redacted]"

// String lists the names, never the values.
func (c Credentials) String() string {
	names := c.names()
	for i, name := range names {
		names[i] = name + ":" + redacted
	}
	return "Credentials{" + strings.Join(names, ", ") + "}"
}

// Format makes every fmt verb print String, so no verb can reach the values.
func (c Credentials) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, c.String())
}

// MarshalJSON encodes the names with redacted values, for loggers that encode a Request
// as JSON. The request body is built from the plain map, not with this.
func (c Credentials) MarshalJSON() ([]byte, error) {
	shown := make(map[string]string, len(c))
	for name := range c {
		shown[name] = redacted
	}
	return json.Marshal(shown)
}

func (c Credentials) names() []string {
	names := make([]string, 0, len(c))
	for name := range c {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
