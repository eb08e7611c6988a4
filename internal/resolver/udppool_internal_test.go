package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

func TestReusableOnlyOnLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:53", true},
		{"127.0.0.53:53", true},
		{"[::1]:53", true},
		{"[::ffff:127.0.0.1]:53", true},
		{"192.0.2.1:53", false},
		{"10.0.0.1:53", false},
		{"[2001:db8::1]:53", false},
		{"0.0.0.0:53", false},
		{"localhost:53", false},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			if got := reusable(tt.addr); got != tt.want {
				t.Fatalf("reusable(%q) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestAnswers(t *testing.T) {
	req := new(dns.Msg)
	req.SetQuestion("Example.COM.", dns.TypeTXT)
	reply := func(edit func(m *dns.Msg)) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		edit(m)
		return m
	}
	for _, tt := range []struct {
		name string
		m    *dns.Msg
		want bool
	}{
		{"same", reply(func(*dns.Msg) {}), true},
		{"name case differs", reply(func(m *dns.Msg) { m.Question[0].Name = "example.com." }), true},
		{"other id", reply(func(m *dns.Msg) { m.Id++ }), false},
		{"not a response", reply(func(m *dns.Msg) { m.Response = false }), false},
		{"other name", reply(func(m *dns.Msg) { m.Question[0].Name = "example.net." }), false},
		{"other type", reply(func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeA }), false},
		{"other class", reply(func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), false},
		{"no question", reply(func(m *dns.Msg) { m.Question = nil }), false},
		{"two questions", reply(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }), false},
		{"nil", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := answers(req, tt.m); got != tt.want {
				t.Fatalf("answers = %v, want %v", got, tt.want)
			}
		})
	}
}
