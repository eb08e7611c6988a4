package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"
	"time"

	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/loadgen"
	"github.com/aupguard/aupguard/internal/testkit/custgen"
	"github.com/aupguard/aupguard/milter"
)

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("milter", config.DefaultListen, "milter address (unix:PATH or inet:HOST:PORT); the gateway serves only milter.allowed_peers (root by default)")
	sessions := fs.Int("sessions", 20, "concurrent sessions")
	messages := fs.Int("messages", 5000, "messages in total")
	size := fs.Int("size", 4096, "message body size in bytes")
	rcpts := fs.Int("rcpts", 1, "recipients per message")
	rate := fs.Float64("rate", 0, "messages per second in total (0: as fast as possible)")
	login := fs.String("login", "", "SASL login ({auth_authen}) of the sending customer")
	client := fs.String("client", "127.0.0.5", "client address of the sending customer")
	from := fs.String("from", "bench@acme.example", "envelope sender and From address")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole run")
	customers := fs.Int("customers", 0, "send as this many distinct customers in turn, those of gen-config (client 10.x.y.7, From bench@cN.example)")
	by := fs.String("customers-by", "network", "how the generated customers are identified: network, login or glob")
	progress := fs.Duration("progress", 0, "print msg/s and errors every interval to stderr (0: off)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	network, address, err := milter.ParseAddress(*addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var senders []loadgen.Sender
	for i := 0; i < *customers; i++ {
		sd := loadgen.Sender{Client: "192.0.2.1", From: fmt.Sprintf("bench@c%d.example", i)}
		switch *by {
		case "network":
			sd.Client = custgen.Addr(i)
		case "login":
			sd.Login = fmt.Sprintf("c%d", i)
		case "glob":
			sd.Login = fmt.Sprintf("c%d-bench", i)
		default:
			fmt.Fprintln(stderr, "bench: -customers-by: want network, login or glob")
			return 2
		}
		senders = append(senders, sd)
	}
	o := loadgen.Options{Network: network, Address: address, Sessions: *sessions, Messages: *messages,
		Size: *size, Rcpts: *rcpts, Rate: *rate, Login: *login, Client: *client, From: *from, Timeout: *timeout, Senders: senders}
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
	raw := fs.Bool("raw", false, "speak the milter protocol directly, with no milter library and no buffered transport (the cheapest anchor)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	network, address, err := milter.ParseAddress(*addr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var m interface {
		Addr() net.Addr
		Close() error
	}
	if *raw {
		m, err = loadgen.ListenRawNop(network, address)
	} else {
		m, err = loadgen.ListenNop(network, address)
	}
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

func runGenConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gen-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("customers", 10000, "customers: cN, logins cN and cN-lJ, glob \"cN-*\", one network, domain cN.example")
	logins := fs.Int("logins", 1, "exact logins per customer")
	st := fs.String("store", "", "store section, verbatim (e.g. \"backend: memory\")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *n < 0 {
		fmt.Fprintln(stderr, "gen-config: want only flags, -customers >= 0")
		return 2
	}
	if err := custgen.Config(stdout, custgen.Options{Customers: *n, Logins: *logins, Store: *st}); err != nil {
		fmt.Fprintf(stderr, "gen-config: %v\n", err)
		return 1
	}
	return 0
}
