package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestQuotaRatios: the customers with their own label value get one
// series per daily quota with a limit; a customer whose read fails, and
// unlabeled ones, are left out.
func TestQuotaRatios(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	var asked []string
	c := &quotaCollector{labeled: func() []string { return []string{"a", "b"} }, read: func(_ context.Context, id string) (QuotaReport, error) {
		asked = append(asked, id)
		switch id {
		case "a":
			return QuotaReport{Limits: []LimitUsage{
				{Name: "messages_per_day", Kind: "quota", Limit: 10, Used: n(5)},
				{Name: "bytes_per_day", Kind: "quota", Unlimited: true, Used: n(1)},
				{Name: "messages_per_minute", Kind: "rate", Limit: 10},
			}}, nil
		case "b":
			return QuotaReport{}, errors.New("store down")
		}
		return QuotaReport{Limits: []LimitUsage{{Name: "messages_per_day", Kind: "quota", Limit: 1, Used: n(1)}}}, nil
	}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			got = append(got, fmt.Sprintf("%s{%s} %v", mf.GetName(), strings.Join(ls, ","), m.GetGauge().GetValue()))
		}
	}
	if want := "aupguard_customer_quota_used_ratio{customer=a,limit=messages_per_day} 0.5"; strings.Join(got, "\n") != want {
		t.Errorf("exported %q, want %q (b failed, an unlimited quota and a rate have no ratio)", got, want)
	}
	if strings.Join(asked, ",") != "a,b" {
		t.Errorf("asked for %v, want the labeled a and b only", asked)
	}
}
