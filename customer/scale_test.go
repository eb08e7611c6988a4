package customer

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"github.com/aupguard/aupguard/config"
)

// TestWriteScaleConfig writes a generated config for the scale figures
// (AUPG_GEN=N AUPG_GEN_OUT=FILE); it is skipped otherwise.
func TestWriteScaleConfig(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("AUPG_GEN"))
	out := os.Getenv("AUPG_GEN_OUT")
	if n == 0 || out == "" {
		t.Skip("AUPG_GEN and AUPG_GEN_OUT not set")
	}
	logins, _ := strconv.Atoi(os.Getenv("AUPG_GEN_LOGINS"))
	var b bytes.Buffer
	if err := GenerateConfig(&b, GenOptions{Customers: n, Logins: logins}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLoadConfig parses, validates and indexes a generated config of
// 10,000 customers (the whole start-up path of the customer list but the
// checks); it grows linearly: see docs/performance.md for 100,000.
func BenchmarkLoadConfig(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			var buf bytes.Buffer
			if err := GenerateConfig(&buf, GenOptions{Customers: n}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg, err := config.Parse(buf.Bytes(), "gen.yaml", config.Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := NewDirectory(cfg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/customer")
		})
	}
}
