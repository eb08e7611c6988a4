package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/aupguard/aupguard/loadgen"
	"github.com/aupguard/aupguard/milter"
)

func init() {
	register("bench", "load-test a milter over the milter protocol, as an MTA would", runBench)
	register("nullmilter", "run a do-nothing milter (accepts at end of message) to compare against", runNullMilter)
}

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("milter", "inet:127.0.0.1:8891", "milter address (inet:HOST:PORT or unix:PATH)")
	sessions := fs.Int("sessions", 20, "concurrent sessions")
	messages := fs.Int("messages", 5000, "messages in total")
	size := fs.Int("size", 4096, "message body size in bytes")
	rcpts := fs.Int("rcpts", 1, "recipients per message")
	rate := fs.Float64("rate", 0, "messages per second in total (0: as fast as possible)")
	login := fs.String("login", "", "SASL login ({auth_authen}) of the sending customer")
	client := fs.String("client", "127.0.0.5", "client address of the sending customer")
	from := fs.String("from", "bench@acme.example", "envelope sender and From address")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole run")
	progress := fs.Duration("progress", 0, "print msg/s and errors every interval to stderr (0: off)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	network, address, err := milter.ParseAddress(*addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	o := loadgen.Options{Network: network, Address: address, Sessions: *sessions, Messages: *messages,
		Size: *size, Rcpts: *rcpts, Rate: *rate, Login: *login, Client: *client, From: *from, Timeout: *timeout}
	if *progress > 0 {
		o.Progress, o.Interval = stderr, *progress
	}
	res, err := loadgen.Run(context.Background(), o)
	fmt.Fprint(stdout, res.String())
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if res.Errors > 0 {
		return 1
	}
	return 0
}

func runNullMilter(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("nullmilter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("listen", "inet:127.0.0.1:8899", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	network, address, err := milter.ParseAddress(*addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	m, err := loadgen.ListenNop(network, address)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "null milter on %s\n", m.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	_ = m.Close()
	return 0
}
