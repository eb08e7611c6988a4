package customer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/clock"
	"github.com/aupguard/aupguard/internal/engine/config"
	"github.com/aupguard/aupguard/internal/store"
	"github.com/aupguard/aupguard/internal/testkit/testenv"
)

func TestImportReaderFormats(t *testing.T) {
	tests := []struct {
		name, format, in string
		ids              []string
		err              string
	}{
		{"json object", FormatJSON, `{"customers": [{"id": "a", "logins": ["a"]}, {"id": "b", "logins": ["b"]}]}`, []string{"a", "b"}, ""},
		{"json array", FormatJSON, "[\n{\"id\": \"a\"}\n]\n", []string{"a"}, ""},
		{"json other member", FormatJSON, `{"clients": []}`, nil, "unknown member clients"},
		{"json empty", FormatJSON, `{"customers": []}`, nil, "no customer listed"},
		{"json garbage after", FormatJSON, `[{"id": "a"}] [`, []string{"a"}, "after the list"},
		{"json cut short", FormatJSON, `[{"id": "a"}, {"id": `, []string{"a"}, "customers[1]"},
		{"ndjson blank lines", FormatNDJSON, "\n{\"id\": \"a\"}\n\n{\"id\": \"b\"}", []string{"a", "b"}, ""},
		{"ndjson unknown field", FormatNDJSON, "{\"id\": \"a\"}\n{\"id\": \"b\", \"colour\": 1}\n", []string{"a"}, "customers[1] (line 2): colour: unknown field"},
		{"yaml", FormatYAML, "customers:\n  - {id: a}\n  - {id: b}\n", []string{"a", "b"}, ""},
		{"yaml bad entry", FormatYAML, "customers:\n  - {id: a}\n  - {id: b, colour: x}\n", []string{"a"}, "customers[1] (line 3)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ir := NewImportReader(strings.NewReader(tc.in), tc.format)
			var ids []string
			var err error
			for {
				var c config.Customer
				c, err = ir.Next()
				if err != nil {
					break
				}
				ids = append(ids, c.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.ids) {
				t.Errorf("ids %v, want %v", ids, tc.ids)
			}
			if tc.err == "" && err != io.EOF || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
	if ImportFormat("application/json; charset=utf-8") != FormatJSON || ImportFormat("x.jsonl") != FormatNDJSON || ImportFormat("text/plain") != FormatYAML {
		t.Error("ImportFormat")
	}
}

// TestImportCommitWithoutAnswerTellsTheTruth makes the commit's answer
// time out (the store paused) and checks that what Import returns is what
// the store holds afterwards, whichever way the race went: applied and
// said so, or not applied (and never applied later) and said so.
func TestImportCommitWithoutAnswerTellsTheTruth(t *testing.T) {
	r := testenv.StartRedis(t, testenv.RedisOptions{})
	h, err := store.Open(config.StoreConfig{Backend: "redis", Timeout: 5 * time.Second, Redis: config.RedisConfig{Addrs: []string{r.Addr()}, KeyPrefix: "t:"}}, clock.System{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	s, _ := OpenStore(h)
	ctx := context.Background()
	old := importCommitTimeout
	importCommitTimeout = 100 * time.Millisecond
	// Once staged, every client's writes pause for longer than the commit
	// waits: the commit gets no answer in time.
	beforeCommit = func() {
		if err := r.Client().Do(ctx, "CLIENT", "PAUSE", "400", "WRITE").Err(); err != nil {
			t.Error(err)
		}
	}
	defer func() { importCommitTimeout, beforeCommit = old, nil }()
	var cs []Change
	for i := 0; i < 50; i++ {
		cs = append(cs, Change{Op: OpImport, ID: fmt.Sprintf("c%d", i), Via: ViaAPI, Definition: []byte(fmt.Sprintf(`{"id":"c%d"}`, i))})
	}
	for round := 0; round < 3; round++ {
		v0, _ := s.Version(ctx)
		first, last, err := s.Import(ctx, v0, cs)
		v1, verr := s.Version(ctx)
		if verr != nil {
			t.Fatal(verr)
		}
		switch {
		case err == nil:
			if first != v0+1 || last != v0+50 || v1 != last {
				t.Fatalf("round %d: applied %d..%d, store at %d (from %d)", round, first, last, v1, v0)
			}
		case errors.Is(err, ErrOutcomeUnknown):
			t.Fatalf("round %d: outcome unknown with the store reachable: %v", round, err)
		default:
			if v1 != v0 {
				t.Fatalf("round %d: answered %v, but the store moved %d -> %d", round, err, v0, v1)
			}
		}
		// Settled either way: no staging is left for a late commit to
		// apply (it would find it incomplete and write nothing).
		if keys, _ := r.Client().Keys(ctx, "t:{dir}:import:*:log").Result(); len(keys) != 0 {
			t.Fatalf("round %d: staging left behind: %v", round, keys)
		}
		t.Logf("round %d: %v (versions %d..%d)", round, err, first, last)
	}
}
