package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/engine/policy"
)

// The straightforward implementation the signer had before it was made
// to build its value in one buffer; TestSignMatchesReference holds the
// lean one to its output, byte for byte.

func refSignedNames(s *Signer, hdrs []policy.Header, added []policy.Header) []string {
	count := map[string]int{}
	for _, h := range hdrs {
		count[strings.ToLower(strings.TrimSpace(h.Name))]++
	}
	over := map[string]bool{}
	for _, n := range s.opts.Oversign {
		over[strings.ToLower(n)] = true
	}
	skip := map[string]bool{"dkim-signature": true, "received": true, "return-path": true}
	var names []string
	seen := map[string]bool{}
	add := func(n string) {
		l := strings.ToLower(n)
		if seen[l] || skip[l] {
			return
		}
		seen[l] = true
		c := count[l]
		if c > 0 && over[l] {
			c++
		}
		for i := 0; i < c; i++ {
			names = append(names, n)
		}
	}
	for _, n := range s.opts.Headers {
		add(n)
	}
	extra := make([]string, 0, len(added))
	for _, h := range added {
		extra = append(extra, strings.TrimSpace(h.Name))
	}
	sort.Strings(extra)
	for _, n := range extra {
		add(n)
	}
	return names
}

func refRelaxedHeader(name, value string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(strings.TrimRight(name, " \t")))
	b.WriteByte(':')
	wsp, wrote := false, false
	for i := 0; i < len(value); i++ {
		c := value[i]
		switch c {
		case '\r', '\n':
			continue
		case ' ', '\t':
			wsp = true
			continue
		}
		if wsp && wrote {
			b.WriteByte(' ')
		}
		wsp, wrote = false, true
		b.WriteByte(c)
	}
	b.WriteString("\r\n")
	return b.String()
}

func refSignNames(s *Signer, k Key, bodyHash []byte, hdrs []policy.Header, names []string, now time.Time) (string, error) {
	tags := []string{"v=1", "a=" + k.Algorithm(), "c=relaxed/relaxed", "d=" + k.Domain, "s=" + k.Selector,
		"t=" + strconv.FormatInt(now.Unix(), 10)}
	if s.opts.Expiration > 0 {
		tags = append(tags, "x="+strconv.FormatInt(now.Add(s.opts.Expiration).Unix(), 10))
	}
	tags = append(tags, "h="+strings.Join(names, ":"), "bh="+base64.StdEncoding.EncodeToString(bodyHash))
	unsigned := refFold(tags) + ";\r\n\tb="
	h := sha256.New()
	used := map[string]int{}
	for _, n := range names {
		l := strings.ToLower(n)
		idx := -1
		skip := used[l]
		for i := len(hdrs) - 1; i >= 0; i-- {
			if strings.EqualFold(strings.TrimSpace(hdrs[i].Name), l) {
				if skip == 0 {
					idx = i
					break
				}
				skip--
			}
		}
		used[l]++
		if idx < 0 {
			continue
		}
		io.WriteString(h, refRelaxedHeader(hdrs[idx].Name, hdrs[idx].Value))
	}
	io.WriteString(h, strings.TrimSuffix(refRelaxedHeader("DKIM-Signature", unsigned), "\r\n"))
	sum := h.Sum(nil)
	var sig []byte
	var err error
	switch key := k.Signer.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(key, sum)
	default:
		sig, err = k.Signer.Sign(rand.Reader, sum, crypto.SHA256)
	}
	if err != nil {
		return "", err
	}
	b64 := base64.StdEncoding.EncodeToString(sig)
	var b strings.Builder
	for len(b64) > 72 {
		b.WriteString(b64[:72])
		b.WriteString("\r\n\t ")
		b64 = b64[72:]
	}
	b.WriteString(b64)
	return unsigned + b.String(), nil
}

func refFold(tags []string) string {
	var b strings.Builder
	line := len("DKIM-Signature:")
	b.WriteByte(' ')
	line++
	for i, t := range tags {
		if i > 0 {
			b.WriteString(";")
			line++
		}
		parts := []string{t}
		if strings.HasPrefix(t, "h=") {
			parts = strings.SplitAfter(t, ":")
		}
		for j, p := range parts {
			sep := ""
			if i > 0 && j == 0 {
				sep = " "
			}
			if line+len(sep)+len(p) > 76 {
				b.WriteString("\r\n\t")
				line = 1
				sep = ""
			}
			b.WriteString(sep + p)
			line += len(sep) + len(p)
		}
	}
	return b.String()
}

func TestSignMatchesReference(t *testing.T) {
	rk, ek, _ := testKeys(t)
	bh := sha256.Sum256([]byte("body"))
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	long := strings.Repeat("Very-Long-Field-Name-", 4) + "End"
	hdrs := []policy.Header{
		{Name: "List-Unsubscribe", Value: " <https://u.example/x>"},
		{Name: "Received", Value: " from a by b"},
		{Name: "From", Value: " A <a@acme.example>"},
		{Name: "to ", Value: " b@example.org,\r\n\tc@example.org"},
		{Name: "SUBJECT", Value: "  hello \t world  "},
		{Name: "Subject", Value: " second"},
		{Name: "Date", Value: " Mon, 23 Nov 2026 10:00:00 +0000"},
		{Name: "Message-ID", Value: " <1@acme.example>"},
		{Name: long, Value: " x"},
		{Name: "X-Ünïcode", Value: " odd"},
		{Name: "Return-Path", Value: " <a@acme.example>"},
	}
	added := []policy.Header{{Name: "List-Unsubscribe", Value: " <https://u.example/x>"}, {Name: long, Value: " x"}}
	for _, tt := range []struct {
		name string
		opts SignOptions
		key  crypto.Signer
		hdrs []policy.Header
	}{
		{"default headers ed25519", SignOptions{Headers: defaultSignedForTest, Oversign: []string{"From"}}, ek, hdrs},
		{"default headers rsa with expiry", SignOptions{Headers: defaultSignedForTest, Oversign: []string{"from", "SUBJECT"}, Expiration: 72 * time.Hour}, rk, hdrs},
		{"no headers present", SignOptions{Headers: []string{"Cc", "Reply-To"}}, ek, nil},
		{"many names fold", SignOptions{Headers: append([]string{long, "x-ünïcode", "Received", "dkim-signature"}, defaultSignedForTest...)}, ek, hdrs},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSigner(nil, tt.opts, nil)
			for _, add := range [][]policy.Header{nil, added} {
				want := refSignedNames(s, tt.hdrs, add)
				got := s.signedNames(tt.hdrs, add)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("names\n got %q\nwant %q", got, want)
				}
				for _, d := range []string{"acme.example", strings.Repeat("long-label.", 6) + "example"} {
					k := Key{Domain: d, Selector: "gw", Signer: tt.key}
					w, err1 := refSignNames(s, k, bh[:], tt.hdrs, want, now)
					g, err2 := s.signNames(k, bh[:], tt.hdrs, got, now)
					if err1 != nil || err2 != nil || g != w {
						t.Fatalf("value\n got %q (%v)\nwant %q (%v)", g, err2, w, err1)
					}
				}
			}
		})
	}
}

var defaultSignedForTest = []string{
	"From", "Reply-To", "Sender", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Id", "Feedback-ID",
}

func TestRelaxedHeaderMatchesReference(t *testing.T) {
	for _, n := range []string{"Subject", "SUBJECT \t", "X-Ünïcode", "A\xffB", "x-K", "\u212aey"} {
		for _, v := range []string{"", " a  b\r\n\tc ", "\t\t", " ünï  code "} {
			if got, want := relaxedHeader(n, v), refRelaxedHeader(n, v); got != want {
				t.Errorf("relaxedHeader(%q, %q) = %q, want %q", n, v, got, want)
			}
		}
	}
}
