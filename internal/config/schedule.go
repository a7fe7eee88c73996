package config

import (
	"fmt"
	"strconv"
	"strings"
)

// checkSchedule says whether v is a schedule the Functions timer trigger
// accepts, as CatchUp/function.json gives it ("%CatchUpSchedule%"): a
// six-field NCRONTAB expression or a TimeSpan. The host resolves %NAME%
// once, so a value naming another setting would reach the trigger as is.
func checkSchedule(v string) error {
	if strings.Contains(v, "%") {
		return fmt.Errorf("%%…%% is not resolved in a setting's value")
	}
	if strings.Contains(v, ":") {
		return checkTimeSpan(v)
	}
	fields := strings.Fields(v)
	if len(fields) != len(cronFields) {
		return fmt.Errorf("%d fields, want 6 (an NCRONTAB expression has seconds first)", len(fields))
	}
	for i, f := range fields {
		if err := cronFields[i].check(f); err != nil {
			return fmt.Errorf("%s field %q: %w", cronFields[i].name, f, err)
		}
	}
	return nil
}

// cronField is one field of an NCRONTAB expression.
type cronField struct {
	name     string
	min, max int
	names    []string // month or day names, from min; NCRONTAB compares their first three letters
}

var cronFields = []cronField{
	{name: "second", max: 59},
	{name: "minute", max: 59},
	{name: "hour", max: 23},
	{name: "day", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day-of-week", max: 6, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// check reads a comma-separated list of *, values and ranges, each with an
// optional /step.
func (c cronField) check(f string) error {
	for _, item := range strings.Split(f, ",") {
		base, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 || n > c.max-c.min+1 {
				return fmt.Errorf("step %q: want a whole number from 1 to %d", step, c.max-c.min+1)
			}
		}
		if base == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(base, "-")
		a, err := c.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		b, err := c.value(hi)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("range %s: the first value is after the last", base)
		}
	}
	return nil
}

func (c cronField) value(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && s[0] != '+' && s[0] != '-' {
		if n < c.min || n > c.max {
			return 0, fmt.Errorf("%d is out of range %d-%d", n, c.min, c.max)
		}
		return n, nil
	}
	if len(s) >= 3 {
		for i, name := range c.names {
			if strings.EqualFold(s[:3], name) && isLetters(s) {
				return c.min + i, nil
			}
		}
	}
	if c.names != nil {
		return 0, fmt.Errorf("%q: want *, a number from %d to %d or a name (%s…), with ranges a-b, lists a,b and steps /n", s, c.min, c.max, strings.Join(c.names[:3], ", "))
	}
	return 0, fmt.Errorf("%q: want *, a number from %d to %d, with ranges a-b, lists a,b and steps /n", s, c.min, c.max)
}

func isLetters(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') {
			return false
		}
	}
	return true
}

// checkTimeSpan reads [d.]hh:mm[:ss], as .NET's TimeSpan and the timer
// trigger do: a period, which must not be zero.
func checkTimeSpan(v string) error {
	bad := fmt.Errorf("not a TimeSpan: want hh:mm:ss or d.hh:mm:ss (00:05:00, 1.00:00:00)")
	days := 0
	clock := v
	if d, rest, ok := strings.Cut(v, "."); ok && !strings.Contains(d, ":") {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || d[0] == '+' {
			return bad
		}
		days, clock = n, rest
	}
	parts := strings.Split(clock, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return bad
	}
	limits := []int{23, 59, 59}
	total := days
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || len(p) > 2 || p[0] == '+' || p[0] == '-' || n > limits[i] {
			return bad
		}
		total += n
	}
	if total == 0 {
		return fmt.Errorf("a TimeSpan of zero would run CatchUp without pause")
	}
	return nil
}
