// Command turn is the app's side of a turn in the image test: it sends one turn through
// tether with the Go client's Turn, which sends the same uuid again (after a tether
// restart, a lost connection) until it has the answer, then prints the answer's stdout and
// exits with the turn's exit status (1 when there is no answer).
//
//	turn -socket /run/tether/tether.sock -session s1 -uuid UUID -message "LINES DELAY"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	tether "github.com/paliad/tether/clients/go"
)

func main() {
	socket := flag.String("socket", "/run/tether/tether.sock", "tether's socket")
	session := flag.String("session", "s1", "the session")
	uuid := flag.String("uuid", "", "the turn's uuid")
	message := flag.String("message", "", "the message")
	timeout := flag.Duration("timeout", 90*time.Second, "how long to keep trying")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client := tether.New(*socket, tether.WithBackoff(200*time.Millisecond, time.Second))
	result, err := client.Turn(ctx, *session, *uuid, *message)
	if err != nil {
		fmt.Fprintln(os.Stderr, "turn:", err)
		os.Exit(1)
	}
	fmt.Print(result.Stdout)
	os.Exit(result.ExitStatus)
}
