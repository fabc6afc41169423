// Command example is the app's remote paliadin service on top of the tether client: it
// asks whether the laptop is there, sends a turn (and the same turn again, which the shim on
// the laptop answers from its journal), then streams a second turn to stdout.
//
//	go run ./example -socket /tmp/tether-demo-sock-XXXX/tether.sock "Hello there"
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

// ErrLaptopOffline is the app's own error for a laptop that is asleep or off the network.
var ErrLaptopOffline = errors.New("the laptop is offline")

// RemotePaliadinService runs paliadin turns on the laptop through tether, where it used to
// spawn `ssh` per turn.
type RemotePaliadinService struct {
	tether  *tether.Client
	session string
}

// Online says whether tether last saw the laptop up (from its cache: no network).
func (s *RemotePaliadinService) Online(ctx context.Context) (bool, error) {
	h, err := s.tether.Health(ctx)
	if err != nil {
		return false, err
	}
	return h.Status == "up", nil
}

// SendMessage runs one turn and returns paliadin's answer. turnID is the app's uuid for the
// turn: sending it again (a retry, a second click) gets the same answer, not a second turn.
func (s *RemotePaliadinService) SendMessage(ctx context.Context, turnID, message string) (string, error) {
	res, err := s.tether.Turn(ctx, s.session, turnID, message)
	if err != nil {
		return "", appError(err)
	}
	if res.ExitStatus != 0 {
		return "", fmt.Errorf("paliadin failed (exit status %d): %s", res.ExitStatus, strings.TrimSpace(res.Stderr))
	}
	return res.Stdout, nil
}

// StreamMessage runs one turn and writes paliadin's answer to w as it is written.
func (s *RemotePaliadinService) StreamMessage(ctx context.Context, turnID, message string, w io.Writer) error {
	stream, err := s.tether.Stream(ctx, tether.TurnRequest(s.session, turnID, message))
	if err != nil {
		return appError(err)
	}
	defer stream.Close()
	for {
		ev, err := stream.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			// Cut or failed mid-way: SendMessage with the same turnID gets the whole answer.
			return appError(err)
		}
		switch ev.Kind {
		case "stdout":
			if _, err := io.WriteString(w, ev.Data); err != nil {
				return err
			}
		case "exit":
			if ev.Result.ExitStatus != 0 {
				return fmt.Errorf("paliadin failed (exit status %d)", ev.Result.ExitStatus)
			}
		}
	}
}

// appError maps tether's errors to the app's.
func appError(err error) error {
	switch {
	case errors.Is(err, tether.ErrUnreachable):
		return fmt.Errorf("%w: %v", ErrLaptopOffline, err)
	case errors.Is(err, tether.ErrUpstreamAuthFailed), errors.Is(err, tether.ErrHostKeyMismatch),
		errors.Is(err, tether.ErrUpstreamMisconfigured):
		return fmt.Errorf("the remote is misconfigured (run `tether doctor`): %w", err)
	default:
		return err
	}
}

func main() {
	socket := flag.String("socket", "", "tether's socket (default $TETHER_SOCKET, else "+tether.DefaultSocket+")")
	session := flag.String("session", "demo-session", "the paliadin session")
	flag.Parse()
	message := strings.Join(flag.Args(), " ")
	if message == "" {
		message = "Grüß dich, tether!"
	}
	svc := &RemotePaliadinService{tether: tether.New(*socket), session: *session}
	if err := run(svc, message); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		if errors.Is(err, ErrLaptopOffline) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func run(svc *RemotePaliadinService, message string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	up, err := svc.Online(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("laptop up: %v\n", up)

	turn := tether.NewTurnID()
	answer, err := svc.SendMessage(ctx, turn, message)
	if err != nil {
		return err
	}
	fmt.Printf("turn %s: %s", turn, answer)
	again, err := svc.SendMessage(ctx, turn, message)
	if err != nil {
		return err
	}
	fmt.Printf("turn %s sent again: %s", turn, again)

	streamed := tether.NewTurnID()
	fmt.Printf("turn %s, streamed: ", streamed)
	return svc.StreamMessage(ctx, streamed, message+" (streamed)", os.Stdout)
}
