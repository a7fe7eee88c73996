package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/catchup"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
	"github.com/kvaudit/kvaudit/internal/parse"
	"github.com/kvaudit/kvaudit/internal/query"
)

func (ta *testApp) timer() (int, []string) {
	ta.t.Helper()
	req, err := hosttest.NewTimerRequest(context.Background(), ta.srv.URL, hosttest.TimerInvocation{})
	if err != nil {
		ta.t.Fatal(err)
	}
	status, resp, err := hosttest.Do(http.DefaultClient, req)
	if err != nil && status == http.StatusOK {
		ta.t.Fatal(err)
	}
	return status, resp.Logs
}

// The timer alone follows a blob Event Grid reported once, empty.
func TestCatchUpTimerFollowsAppends(t *testing.T) {
	ta := newTestApp(t, nil)
	hour := time.Now().UTC().Truncate(time.Hour)
	name := ingesttest.BlobName("vault9", hour)
	ta.put(name, nil)
	if status, logs := ta.timer(); status != http.StatusOK || !strings.Contains(logs[0], "1 blobs listed") {
		t.Fatalf("first tick: %d %q", status, logs)
	}
	data := ingesttest.Records("vault9", hour, 0, 12)
	cut := bytes.Index(data, []byte("c-000005"))
	ta.appendTo(name, data[:cut])
	if _, logs := ta.timer(); !strings.Contains(logs[0], "5 records indexed") {
		t.Fatalf("second tick: %q", logs)
	}
	ta.appendTo(name, data[cut:])
	if _, logs := ta.timer(); !strings.Contains(logs[0], "7 records indexed") {
		t.Fatalf("third tick: %q", logs)
	}
	if n := ta.countRows(index.TableEvents); n != 12 {
		t.Fatalf("%d rows, want 12", n)
	}

	ta.appendTo(name, []byte(`{"time":"`)) // a record being written
	resp, err := http.Get(ta.srv.URL + "/api/audit/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		LagBytes int64 `json:"lagBytes"`
		Blobs    []struct {
			Blob    string `json:"blob"`
			Offset  int64  `json:"offset"`
			Lag     int64  `json:"lag"`
			Records int64  `json:"records"`
		} `json:"blobs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status: %d %v", resp.StatusCode, err)
	}
	if len(st.Blobs) != 1 || st.Blobs[0].Offset != int64(len(data)) || st.Blobs[0].Lag != 9 || st.Blobs[0].Records != 12 || st.LagBytes != 9 {
		t.Fatalf("status %+v", st)
	}
}

// A blob larger than one invocation's time budget is indexed exactly once
// across several invocations (issue 10 item 3): BlobTrigger stops at a
// checkpoint and answers 200, and CatchUp goes on with the blob although
// its hour is older than the hours it lists, alternating with the
// BlobTrigger re-deliveries of the polling source.
func TestBudgetedBlobTriggerIsContinuedByCatchUp(t *testing.T) {
	ta := newTestApp(t, map[string]string{config.SettingCatchUpHours: "1"})
	// Every budget is spent at the first checkpoint: one chunk of 8 KiB
	// per invocation.
	ta.app.settings.BlobTriggerBudget = time.Nanosecond
	ta.app.settings.CatchUpBudget = time.Nanosecond
	ta.app.ingester.ChunkBytes = 8 << 10
	hour := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)
	name := ingesttest.BlobName("vault5", hour)
	const n = 150
	data := ingesttest.Records("vault5", hour, 0, n)
	ta.put(name, data)
	if len(data) < 8*(8<<10) {
		t.Fatalf("%d bytes: want a blob of many chunks", len(data))
	}
	offset := func() int64 {
		cp, err := ingest.ReadCheckpoint(context.Background(), ta.app.tables, name)
		if err != nil {
			t.Fatal(err)
		}
		return cp.Offset
	}

	status, resp := ta.invoke(name, data, true, false)
	if status != http.StatusOK || !strings.Contains(resp.Logs[0], "continued by CatchUp") {
		t.Fatalf("first BlobTrigger: %d %q: want 200, the rest continued by CatchUp", status, resp.Logs)
	}
	invocations, ticks := 1, 0
	last := offset()
	for i := 0; i < 200 && last < int64(len(data)); i++ {
		if i%3 == 2 {
			// The polling source delivers the blob again: it goes on from
			// the checkpoint.
			if status, resp := ta.invoke(name, data, true, false); status != http.StatusOK {
				t.Fatalf("BlobTrigger %d: %d %q", invocations+1, status, resp.Logs)
			}
		} else {
			if status, logs := ta.timer(); status != http.StatusOK {
				t.Fatalf("CatchUp: %d %q", status, logs)
			}
			ticks++
		}
		invocations++
		now := offset()
		if now <= last {
			t.Fatalf("invocation %d did not move the checkpoint (%d)", invocations, now)
		}
		last = now
	}
	if last != int64(len(data)) || invocations < 8 || ticks < 4 {
		t.Fatalf("checkpoint %d of %d after %d invocations (%d CatchUp ticks)", last, len(data), invocations, ticks)
	}
	// Done: the next tick forgets the blob.
	if status, logs := ta.timer(); status != http.StatusOK {
		t.Fatalf("CatchUp: %d %q", status, logs)
	}
	if left, err := ingest.ListUnfinished(context.Background(), ta.app.tables); err != nil || len(left) != 0 {
		t.Fatalf("unfinished blobs after the end: %v %v", left, err)
	}

	// Exactly once: every record one event row, and stats count each once.
	ids := map[string]int{}
	pager := ta.app.tables.Client(index.TableEvents).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range page.Entities {
			var rec parse.Record
			if err := query.DecodeRow(raw, &rec); err != nil {
				t.Fatal(err)
			}
			ids[rec.CorrelationID]++
		}
	}
	rows := 0
	for _, c := range ids {
		rows += c
	}
	if len(ids) != n || rows != n {
		t.Fatalf("%d distinct records in %d event rows, want %d and %d", len(ids), rows, n, n)
	}
	q := fmt.Sprintf("/api/audit/stats?vault=vault5&from=%s&to=%s", hour.Format(time.RFC3339), hour.Add(time.Hour).Format(time.RFC3339))
	if status, body := ta.get(q); status != http.StatusOK || body["total"] != float64(n) {
		t.Fatalf("stats: %d %v, want total %d", status, body, n)
	}
	t.Logf("%d bytes indexed in %d invocations, %d of them CatchUp ticks", len(data), invocations, ticks)
}

// /api/audit/status shows a blob's recorded error as a short reason in
// kvaudit's words: not the SDK's dump, its request URLs (a SAS signature in
// their query) or network addresses. handler status, which needs the
// storage settings, prints the whole text. The errors are real: the SDK's
// answer of Azurite and net/http's of a closed port.
func TestStatusShowsShortReasons(t *testing.T) {
	ta := newTestApp(t, nil)
	hour := time.Now().UTC().Truncate(time.Hour)
	ok := ingesttest.BlobName("statusvault", hour)
	data := ingesttest.Records("statusvault", hour, 0, 3)
	ta.put(ok, data)
	if status, resp := ta.invoke(ok, data, true, false); status != http.StatusOK {
		t.Fatalf("BlobTrigger: %d %q", status, resp.Logs)
	}
	_, sdkErr := ta.cc.NewBlobClient("no/such/blob").DownloadStream(context.Background(), nil)
	resp, netErr := http.Get("http://127.0.0.1:1/logs/b?sv=2024-08-04&sig=S3cr3tSignature%3D")
	if sdkErr == nil || netErr == nil {
		t.Fatalf("want two failures: %v %v", sdkErr, netErr)
	}
	if resp != nil {
		resp.Body.Close()
	}
	failed := map[string]error{
		ingesttest.BlobName("statusvault", hour.Add(-time.Hour)):   fmt.Errorf("ingest: read blob %q: %w", "x", azstore.Classify(sdkErr)),
		ingesttest.BlobName("statusvault", hour.Add(-2*time.Hour)): fmt.Errorf("ingest: read blob %q: %w", "y", netErr),
	}
	for name, cause := range failed {
		ta.put(name, data)
		if _, err := ingest.RecordFailure(context.Background(), ta.app.tables, name, ingest.BlobInfo{Length: int64(len(data))}, cause); err != nil {
			t.Fatal(err)
		}
	}
	var st struct {
		Blobs []struct {
			Blob      string `json:"blob"`
			Tries     int    `json:"tries"`
			LastError string `json:"lastError"`
		} `json:"blobs"`
	}
	code, body := ta.send("GET", "/api/audit/status", "", nil)
	if err := json.Unmarshal(body, &st); code.StatusCode != 200 || err != nil {
		t.Fatalf("status: %d %v %s", code.StatusCode, err, body)
	}
	seen := 0
	for _, b := range st.Blobs {
		cause, ok := failed[b.Blob]
		if !ok {
			continue
		}
		seen++
		if b.Tries != 1 || b.LastError != catchup.ShortError(cause.Error()) || !strings.HasPrefix(b.LastError, "ingest: read blob") {
			t.Errorf("%s: tries %d, lastError %q", b.Blob, b.Tries, b.LastError)
		}
	}
	if seen != 2 {
		t.Fatalf("the failed blobs are not in the status: %s", body)
	}
	for _, leak := range []string{"RESPONSE", "127.0.0.1", "sig=", "S3cr3t", "://", `\n`, "dial tcp", "RequestId"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("the status answer holds %q: %s", leak, body)
		}
	}
	if !strings.Contains(string(body), "(storage answered 404 BlobNotFound)") {
		t.Errorf("the status answer lacks the storage's status and code: %s", body)
	}
	// The operator's command shows the whole recorded text.
	code2, out, errs := ta.runCLI("status", "-o", "json")
	if code2 != 0 || !strings.Contains(out, "RESPONSE 404") || !strings.Contains(out, "S3cr3tSignature") {
		t.Fatalf("handler status: exit %d\n%s\n%s", code2, out, errs)
	}
}
