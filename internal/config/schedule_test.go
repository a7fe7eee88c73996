package config

import (
	"strings"
	"testing"
)

// CatchUpSchedule is checked at start like every other setting: what the
// timer trigger would refuse, or read as something else, stops the
// handler with a message naming the setting and what is accepted.
func TestCatchUpSchedule(t *testing.T) {
	for _, tt := range []struct {
		v    string
		says string // "" when accepted
	}{
		{"0 */2 * * * *", ""},
		{"0 0 * * * *", ""},
		{"30 5 3 1 1 0", ""},
		{"0 0 9-17 * * Mon-Fri", ""},
		{"0 0 9-17/2 * * mon,wed,FRI", ""},
		{"0 30 9 * Jan,July,dec *", ""},
		{"0 0 0 1 1-12/3 *", ""},
		{"5/15 * * * * *", ""},
		{"0  */5  *  *  *  *", ""},
		{"59 59 23 31 12 6", ""},
		{"00:05:00", ""},
		{"01:30", ""},
		{"1.00:00:00", ""},
		{"0.00:00:30", ""},

		{"*/2 * * * *", "5 fields, want 6"},
		{"0 */2 * * * * *", "7 fields, want 6"},
		{"%OtherSetting%", "%…% is not resolved"},
		{"0 %M% * * * *", "%…% is not resolved"},
		{"60 * * * * *", "second field \"60\": 60 is out of range 0-59"},
		{"0 60 * * * *", "minute field"},
		{"0 0 24 * * *", "hour field"},
		{"0 0 0 0 * *", "day field \"0\": 0 is out of range 1-31"},
		{"0 0 0 * 13 *", "month field"},
		{"0 0 0 * * 7", "day-of-week field \"7\": 7 is out of range 0-6"},
		{"0 0 0 * Foo *", "month field \"Foo\""},
		{"0 0 0 * * Ma", "day-of-week field"},
		{"0 0 0 * * Mon1", "day-of-week field"},
		{"0 0 17-9 * * *", "the first value is after the last"},
		{"*/0 * * * * *", "step \"0\": want a whole number from 1 to 60"},
		{"*/ * * * * *", "step"},
		{"1,,2 * * * * *", "second field"},
		{"-1 * * * * *", "second field"},
		{"+1 * * * * *", "second field"},
		{"? * * * * *", "second field"},
		{"@hourly", "1 fields, want 6"},
		{"00:00:00", "zero"},
		{"24:00:00", "not a TimeSpan"},
		{"00:60:00", "not a TimeSpan"},
		{"1:2:3:4", "not a TimeSpan"},
		{"-00:05:00", "not a TimeSpan"},
		{"x.00:05:00", "not a TimeSpan"},
		{"00:05:00.5", "not a TimeSpan"},
	} {
		t.Run(tt.v, func(t *testing.T) {
			s, err := FromLookup(lookup(map[string]string{SettingLogsStorage: "UseDevelopmentStorage=true", SettingCatchUpSchedule: tt.v}))
			if tt.says == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if s.CatchUpSchedule != tt.v {
					t.Fatalf("CatchUpSchedule = %q", s.CatchUpSchedule)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want it refused saying %q", tt.says)
			}
			for _, want := range []string{SettingCatchUpSchedule + "=", tt.says, "six-field NCRONTAB", "TimeSpan"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("%v\ndoes not say %q", err, want)
				}
			}
		})
	}
}
