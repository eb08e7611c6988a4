package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a period length: a Go duration ("36h", "90m") or a
// number of days ("7d").
func ParseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("bad period %q: want e.g. 24h or 7d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("bad period %q: want e.g. 24h or 7d", s)
	}
	return d, nil
}

// parseTime parses a date (2006-01-02, UTC midnight; endOfDay moves it to
// the next midnight, so that "-to 2026-03-31" includes that day) or an
// RFC 3339 time.
func parseTime(s string, endOfDay bool) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", s); err == nil {
		if endOfDay {
			t = t.Add(24 * time.Hour)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad time %q: want 2006-01-02 or RFC 3339", s)
	}
	return t, nil
}

// ParseRange turns the commands' and the API's period options into
// [since, until): either since (a length back from now), or from and/or
// to (dates or RFC 3339 times; to defaults to now, from to 24h before to).
// With nothing given the period is def back from now.
func ParseRange(since, from, to string, def time.Duration, now time.Time) (time.Time, time.Time, error) {
	if since != "" && (from != "" || to != "") {
		return time.Time{}, time.Time{}, fmt.Errorf("give either since or from/to, not both")
	}
	if from == "" && to == "" {
		d := def
		if since != "" {
			var err error
			if d, err = ParseDuration(since); err != nil {
				return time.Time{}, time.Time{}, err
			}
		}
		return now.Add(-d), now, nil
	}
	until := now
	if to != "" {
		var err error
		if until, err = parseTime(to, true); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	start := until.Add(-24 * time.Hour)
	if from != "" {
		var err error
		if start, err = parseTime(from, false); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if !start.Before(until) {
		return time.Time{}, time.Time{}, fmt.Errorf("empty period: %s is not before %s", start.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	return start, until, nil
}
