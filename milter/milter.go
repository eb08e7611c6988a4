// Package milter attaches the gateway to an MTA over the milter protocol
// (version 6, as Postfix speaks it). It is the only package that imports the
// milter library: it negotiates what the gateway needs, turns MTA events into
// gateway.Session calls and verdicts into milter responses, and makes sure
// that no error or panic ever reaches the library (which would drop the MTA
// connection and make Postfix apply milter_default_action to every message).
package milter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	gm "github.com/d--j/go-milter"
	"golang.org/x/net/netutil"

	"github.com/aupguard/aupguard/internal/connguard"
	"github.com/aupguard/aupguard/internal/engine/gateway"
	"github.com/aupguard/aupguard/internal/milterconn"
	"github.com/aupguard/aupguard/internal/observability/panics"
)

// Protocol is what the gateway asks of the MTA. It replies only at MAIL
// FROM, RCPT TO and end of message; at every other stage the MTA is told
// not to wait for a reply. Header values are passed with their leading
// space so that DKIM canonicalisation sees them as sent.
const Protocol = gm.OptNoConnReply | gm.OptNoHeloReply | gm.OptNoDataReply |
	gm.OptNoHeaderReply | gm.OptNoEOHReply | gm.OptNoBodyReply | gm.OptNoUnknownReply |
	gm.OptNoUnknown | gm.OptNoData | gm.OptHeaderLeadingSpace

// Actions are the message modifications the gateway may make: add headers
// (DKIM-Signature, List-Unsubscribe, feedback id) and quarantine (HOLD).
const Actions = gm.OptAddHeader | gm.OptChangeHeader | gm.OptQuarantine | gm.OptRemoveRcpt

// SessionObserver is told when MTA connections open and close (metrics).
type SessionObserver interface {
	SessionOpened()
	SessionClosed()
}

// Options configure a Server.
type Options struct {
	// Listen is "inet:HOST:PORT" or "unix:PATH".
	Listen string
	// AllowedMTAs are the networks remote MTAs may connect from over TCP;
	// empty allows no peer from another host (a loopback listener, which
	// the config requires without allowed_mtas, has none).
	AllowedMTAs []netip.Prefix
	// AllowedPeers are the uids of the local processes that may connect
	// (peer.go); nil: DefaultPeers as they resolve on this host.
	AllowedPeers []uint32
	// SocketGroup is the group of a unix: socket (the MTA's); "" keeps the
	// gateway's own group. See listenUnix.
	SocketGroup string
	// Peers is told of each refused peer (metrics); may be nil.
	Peers          PeerObserver
	MaxConnections int
	ReadTimeout    time.Duration
	WriteTimeout   time.Duration
	Logger         *slog.Logger
	Sessions       SessionObserver
	// Panics logs and counts recovered panics (nil: slog.Default, uncounted).
	Panics *panics.Reporter
}

// Server is the milter listener.
type Server struct {
	engine *gateway.Engine
	opts   Options
	log    *slog.Logger
	srv    *gm.Server
	ln     net.Listener
	retry  *connguard.RetryListener
	active atomic.Int64
	access atomic.Pointer[Access]
}

// Listen opens the listener and prepares the server; Serve runs it.
func Listen(engine *gateway.Engine, opts Options) (*Server, error) {
	network, addr, err := ParseAddress(opts.Listen)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{engine: engine, opts: opts, log: log}
	s.SetAccess(opts.AllowedPeers, opts.AllowedMTAs)
	var ln net.Listener
	var owners ownerLookup
	if network == "unix" {
		if ln, err = listenUnix(addr, opts.SocketGroup, log); err != nil {
			return nil, err
		}
	} else {
		// Peers on this host are judged by the user owning their socket:
		// without sock_diag that cannot be known, and the listener does
		// not start rather than let every local process speak milter.
		if owners, err = newOwnerLookup(); err != nil {
			return nil, fmt.Errorf("milter listen %s: cannot check which user a local peer is (%w); use a unix: socket, or allow AF_NETLINK (systemd RestrictAddressFamilies)", opts.Listen, err)
		}
		// No TCP keep-alive on MTA connections: an idle or vanished MTA is
		// noticed by milter.read_timeout, and Postfix opens a connection per
		// SMTP session, so the four keep-alive socket options Go would set on
		// every accepted connection are four system calls per message for
		// nothing.
		lc := net.ListenConfig{KeepAlive: -1}
		if ln, err = lc.Listen(context.Background(), network, addr); err != nil {
			return nil, fmt.Errorf("milter listen %s: %w", opts.Listen, err)
		}
	}
	// The peer check comes before the connection limit: a refused peer
	// never holds a slot.
	ln = &peerListener{Listener: ln, access: &s.access, owner: owners, log: log, obs: opts.Peers}
	if opts.MaxConnections > 0 {
		// Beyond the limit the MTA waits in the listen backlog; Postfix
		// applies milter_connect_timeout, then milter_default_action.
		ln = netutil.LimitListener(ln, opts.MaxConnections)
	}
	ln = milterconn.NewListener(ln, milterconn.Options{Rejected: func(remote net.Addr, err *milterconn.ProtocolError) {
		// One line per connection closed; the library's own warning about
		// the failed read is not repeated (see libraryWarning).
		log.Warn("milter connection closed: protocol violation", "remote", remote.String(), "err", err.Error())
	}})
	// The library's Serve returns at the first accept error (running out
	// of descriptors, say), which would end the gateway: outermost, every
	// error but the listener's closing is retried with back-off instead.
	s.retry = connguard.Retry(ln, "milter", log)
	s.ln = s.retry
	libraryLog.Store(log)
	s.srv = gm.NewServer(s.serverOptions()...)
	return s, nil
}

// libraryLog is where the milter library's warnings go: the logger of the
// last server opened (the library has one process-wide warning hook).
var libraryLog atomic.Pointer[slog.Logger]

func init() { gm.LogWarning = libraryWarning }

// libraryWarning logs one warning of the milter library through slog, so
// that the log stays structured. A warning about a protocol violation that
// milterconn already logged is dropped.
func libraryWarning(format string, v ...any) {
	for _, a := range v {
		if err, ok := a.(error); ok {
			var pe *milterconn.ProtocolError
			if errors.As(err, &pe) {
				return
			}
		}
	}
	log := libraryLog.Load()
	if log == nil {
		log = slog.Default()
	}
	log.Warn("milter library: " + fmt.Sprintf(format, v...))
}

func (s *Server) serverOptions() []gm.Option {
	o := []gm.Option{
		gm.WithMaximumVersion(6),
		gm.WithProtocols(Protocol),
		gm.WithActions(Actions),
		gm.WithMacroRequest(gm.StageConnect, []gm.MacroName{gm.MacroClientAddr, gm.MacroDaemonName}),
		// The queue id at MAIL and RCPT too: Postfix knows it there when it
		// opens the queue file at MAIL (smtpd_delay_open_until_valid_rcpt =
		// no), so that decisions made at RCPT carry it.
		gm.WithMacroRequest(gm.StageMail, []gm.MacroName{gm.MacroQueueId, gm.MacroAuthAuthen, gm.MacroMailAddr}),
		gm.WithMacroRequest(gm.StageRcpt, []gm.MacroName{gm.MacroQueueId, gm.MacroRcptAddr}),
		gm.WithMacroRequest(gm.StageEOH, []gm.MacroName{gm.MacroQueueId}),
		gm.WithMacroRequest(gm.StageEOM, []gm.MacroName{gm.MacroQueueId}),
		gm.WithMilter(func() gm.Milter { return s.newMilter() }),
		// A panic while the library serves one connection closes that
		// connection only (third_party/go-milter/PATCHES.md).
		gm.WithPanicHandler(func(p any, stack []byte) {
			s.opts.Panics.RecoveredStack(panics.WhereConnection, "", p, stack)
		}),
	}
	if s.opts.ReadTimeout > 0 {
		o = append(o, gm.WithReadTimeout(s.opts.ReadTimeout))
	}
	if s.opts.WriteTimeout > 0 {
		o = append(o, gm.WithWriteTimeout(s.opts.WriteTimeout))
	}
	return o
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve accepts MTA connections until Shutdown.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, gm.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for the MTA connections to end, up to
// ctx's deadline; then it closes them.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// AcceptFailures is the number of failed accepts retried so far.
func (s *Server) AcceptFailures() uint64 { return s.retry.Failures() }

// RetryListener is the listener that retries failed accepts (metrics).
func (s *Server) RetryListener() *connguard.RetryListener { return s.retry }

// Active returns the number of open MTA connections.
func (s *Server) Active() int64 { return s.active.Load() }

// ParseAddress parses "inet:HOST:PORT", "inet6:HOST:PORT" or "unix:PATH".
func ParseAddress(s string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok || rest == "":
	case kind == "unix" || kind == "local":
		return "unix", rest, nil
	case kind == "inet" || kind == "inet6":
		if _, _, err := net.SplitHostPort(rest); err == nil {
			return "tcp", rest, nil
		}
	}
	return "", "", fmt.Errorf("milter address %q: want inet:HOST:PORT or unix:PATH", s)
}

// SetAccess sets who may connect: the uids of local peers (nil:
// DefaultPeers as they resolve here) and the networks of remote ones. It
// applies to connections accepted from then on (a reload).
func (s *Server) SetAccess(uids []uint32, networks []netip.Prefix) {
	if uids == nil {
		var unknown []string
		uids, unknown = ResolvePeers(DefaultPeers)
		for _, n := range unknown {
			s.log.Warn("milter: allowed peer is no user on this host", "user", n)
		}
	}
	s.access.Store(&Access{UIDs: slices.Clone(uids), Networks: slices.Clone(networks)})
}
