package store

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestRedisLogIsStructured(t *testing.T) {
	var buf bytes.Buffer
	l := redisLog{slog.New(slog.NewJSONHandler(&buf, nil))}
	l.Printf(context.Background(), "redis: %s:%d: Conn has unread data", "pool.go", 770)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	if line["level"] != "WARN" || line["msg"] != "redis client" || line["detail"] != "pool.go:770: Conn has unread data" {
		t.Fatalf("line = %v", line)
	}
}
