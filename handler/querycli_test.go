package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
)

// runCLI runs `handler args…` with the fixture app's settings in the
// environment, as an operator's shell would have them.
func (ta *testApp) runCLI(args ...string) (code int, stdout, stderr string) {
	ta.t.Helper()
	ta.t.Setenv(config.SettingLogsStorage, azuritetest.Require(ta.t).ConnectionString)
	ta.t.Setenv(config.SettingLogsContainer, ta.app.settings.LogsContainer)
	ta.t.Setenv(config.SettingTablePrefix, ta.app.settings.TablePrefix)
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestQueryCLI(t *testing.T) {
	ta := fixtureApp(t)
	window := []string{"-from", "2026-11-20T00:00:00Z", "-to", "2026-11-22T00:00:00Z"}
	cli := func(args ...string) (int, string, string) {
		return ta.runCLI(append(args, window...)...)
	}

	t.Run("events table", func(t *testing.T) {
		ta.t = t
		code, out, errs := cli("query", "events", "-vault", "kv1", "-limit", "5")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 6 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "2026-11-21T01:56:00.0590000Z") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		if !strings.Contains(errs, "more events: repeat with -continuation ") {
			t.Fatalf("stderr %q lacks the continuation", errs)
		}
		tok := strings.Fields(strings.TrimPrefix(errs, "more events: repeat with -continuation "))[0]
		code, out, errs = cli("query", "events", "-vault", "kv1", "-limit", "5", "-continuation", tok)
		if code != 0 || strings.Contains(out, "2026-11-21T01:56:00.0590000Z") || strings.Count(out, "\n") != 6 {
			t.Fatalf("second page: exit %d\n%s\n%s", code, out, errs)
		}
	})
	t.Run("events all as csv", func(t *testing.T) {
		ta.t = t
		code, out, errs := cli("query", "events", "-vault", "kv1", "-limit", "7", "-all", "-o", "csv")
		rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if code != 0 || err != nil || len(rows) != apiKV1+1 || strings.Contains(out, "#continuation") {
			t.Fatalf("exit %d, %v, %d rows\n%s", code, err, len(rows), errs)
		}
	})
	t.Run("events all as json", func(t *testing.T) {
		ta.t = t
		code, out, errs := cli("query", "events", "-caller", "USER1@contoso.com", "-limit", "4", "-all", "-o", "json")
		var page eventsPage
		if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page.Events) != 20 || page.Continuation != nil {
			t.Fatalf("exit %d, %v, %d events\n%s", code, err, len(page.Events), errs)
		}
	})
	t.Run("stats", func(t *testing.T) {
		ta.t = t
		code, out, errs := cli("query", "stats", "-vault", "kv1", "-by", "status")
		if code != 0 || !strings.Contains(out, "STATUS") || !regexpMatch(`(?m)^\s*200\s+45$`, out) || !strings.Contains(out, "total 60 events") {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
	})
	t.Run("detections", func(t *testing.T) {
		ta.t = t
		code, out, errs := cli("query", "detections", "-vault", "kv1", "-threshold", "5", "-o", "ndjson")
		if code != 0 || strings.Count(out, "\n") != 21 {
			t.Fatalf("exit %d\n%s\n%s", code, out, errs)
		}
		code, out, _ = cli("query", "detections", "-vault", "kv1", "-threshold", "5")
		if code != 0 || !strings.Contains(out, "refusedAccess: 15") || !strings.Contains(out, "massSecretRetrieval") {
			t.Fatalf("table: exit %d\n%s", code, out)
		}
	})
	t.Run("mistakes", func(t *testing.T) {
		ta.t = t
		for _, tt := range []struct {
			args []string
			says string
		}{
			{[]string{"query", "events", "-vault", "x' or PartitionKey ne '"}, "-vault: want a vault name"},
			{[]string{"query", "events"}, "give at least one of vault"},
			{[]string{"query", "events", "-vault", "kv1", "-o", "xml"}, "-o \"xml\""},
			{[]string{"query", "events", "-vault", "kv1", "stray"}, "unexpected argument"},
			{[]string{"query", "stats", "-vault", "kv1", "-threshold", "3"}, "flag provided but not defined: -threshold"},
			{[]string{"query", "everything"}, "unknown query"},
			{[]string{"query"}, "usage: handler query"},
		} {
			code, _, errs := ta.runCLI(tt.args...)
			if code != 2 || !strings.Contains(errs, tt.says) {
				t.Errorf("%v: exit %d, stderr %q; want 2 saying %q", tt.args, code, errs, tt.says)
			}
		}
	})
}

func TestTerminalSafe(t *testing.T) {
	if got := tcell("evil\x1b[2J\ttab\u0085"); got != "evil\uFFFD[2J\uFFFDtab\uFFFD" {
		t.Fatalf("%q", got)
	}
	if got := tcell(strings.Repeat("é", 60)); len([]rune(got)) != 48 {
		t.Fatalf("%q", got)
	}
}

func regexpMatch(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }
