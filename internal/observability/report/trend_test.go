package report

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aupguard/aupguard/internal/checks/optout"
)

func TestRateTicks(t *testing.T) {
	for _, c := range []struct {
		max  float64
		want []float64
	}{
		{0.0012, []float64{0, 0.0005, 0.001, 0.0015}},
		{0.003, []float64{0, 0.001, 0.002, 0.003}},
		{0.0036, []float64{0, 0.001, 0.002, 0.003, 0.004}},
		{0.07, []float64{0, 0.02, 0.04, 0.06, 0.08}},
		{1, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{0, []float64{0, 0.0002, 0.0004, 0.0006, 0.0008, 0.001}},
	} {
		got := rateTicks(c.max)
		if len(got) != len(c.want) {
			t.Errorf("rateTicks(%g) = %v, want %v", c.max, got, c.want)
			continue
		}
		for i := range got {
			if d := got[i] - c.want[i]; d > 1e-12 || d < -1e-12 {
				t.Errorf("rateTicks(%g) = %v, want %v", c.max, got, c.want)
				break
			}
		}
	}
}

func TestComplaintTrendChart(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)
	pt := func(h int, c, d int64) optout.TrendPoint {
		p := optout.TrendPoint{Start: t0.Add(time.Duration(h) * time.Hour), Complaints: c, Delivered: d}
		if d > 0 {
			p.Rate = float64(c) / float64(d)
		}
		return p
	}
	ticks := regexp.MustCompile(`<text class="tick"[^>]*>([^<]+)</text>`)
	t.Run("series with a gap", func(t *testing.T) {
		svg := ComplaintTrendChart([]optout.TrendPoint{pt(0, 0, 1000), pt(7, 1, 1000), pt(14, 0, 0), pt(21, 4, 1000), pt(28, 2, 1000)}, 0.001, 0.003)
		var labels []string
		for _, m := range ticks.FindAllStringSubmatch(svg, -1) {
			labels = append(labels, m[1])
		}
		if want := []string{"0.0%", "0.1%", "0.2%", "0.3%", "0.4%"}; !reflect.DeepEqual(labels, want) {
			t.Errorf("y ticks %v, want %v", labels, want)
		}
		for _, re := range []string{
			`<g class="threshold" data-threshold="warn" data-value="0.001">.*?warn 0.1%</text></g>`,
			`<g class="threshold" data-threshold="act" data-value="0.003">.*?act 0.3%</text></g>`,
			`data-points="5"`,
		} {
			if !regexp.MustCompile(re).MatchString(svg) {
				t.Errorf("no %s in\n%s", re, svg)
			}
		}
		// The bucket with nothing delivered breaks the line in two runs.
		if n := strings.Count(svg, `<polyline class="series"`); n != 2 {
			t.Errorf("%d line runs, want 2", n)
		}
		if n := strings.Count(svg, `<circle class="point"`); n != 4 {
			t.Errorf("%d points, want 4", n)
		}
	})
	t.Run("one point is a dot", func(t *testing.T) {
		svg := ComplaintTrendChart([]optout.TrendPoint{pt(0, 1, 500)}, 0.001, 0.003)
		if strings.Contains(svg, "<polyline") || strings.Count(svg, `<circle class="point"`) != 1 {
			t.Errorf("single point drawn as a line:\n%s", svg)
		}
		if !strings.Contains(svg, `data-complaints="1" data-delivered="500"`) {
			t.Errorf("point data missing:\n%s", svg)
		}
		// 0.2% is below act: the axis still reaches above act (0.36%).
		if !strings.Contains(svg, `>0.4%</text>`) {
			t.Errorf("axis does not reach above act:\n%s", svg)
		}
	})
	t.Run("empty", func(t *testing.T) {
		if svg := ComplaintTrendChart(nil, 0.001, 0.003); !strings.Contains(svg, `class="empty"`) || !strings.Contains(svg, `data-threshold="act"`) {
			t.Errorf("empty chart:\n%s", svg)
		}
	})
}
