package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
)

const sampleBlob = "resourceId=/SUBSCRIPTIONS/F40A1F1D-F2C6-4444-XXXX/RESOURCEGROUPS/INTEGRATION/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/TESTPERMISSIONVAULT/y=2024/m=04/d=03/h=14/m=00/PT1H.json"

// keepSamples are the settings of a test of the real samples, which are of
// 2016 and 2024: a retention that keeps them.
var keepSamples = map[string]string{config.SettingRetentionDays: "36600"}

func samples(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../internal/parse/testdata/sekoia-intake-formats-keyvault.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// invoke sends the host's blob-trigger invocation for name, with the
// blob's content in Data as the host passes it.
func (ta *testApp) invoke(name string, content []byte, binary, metadataFirst bool) (int, funchost.Response) {
	ta.t.Helper()
	req, err := hosttest.NewBlobRequest(context.Background(), ta.srv.URL, hosttest.BlobInvocation{
		Name: name, Container: ta.app.settings.LogsContainer, Content: bytes.NewReader(content),
		Binary: binary, MetadataFirst: metadataFirst, ContentLength: int64(len(content)),
	})
	if err != nil {
		ta.t.Fatal(err)
	}
	status, resp, err := hosttest.Do(http.DefaultClient, req)
	// Do calls any non-200 an error (the host would retry); the tests that
	// expect one check the status themselves.
	if err != nil && (status == http.StatusOK || status == 0 || resp.Logs == nil) {
		ta.t.Fatal(err)
	}
	return status, resp
}

func TestBlobTriggerWireFormats(t *testing.T) {
	for _, tt := range []struct {
		name                  string
		binary, metadataFirst bool
	}{
		{"binary data first", true, false},
		{"binary metadata first", true, true},
		{"string twice encoded", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestApp(t, keepSamples)
			data := samples(t)
			ta.put(sampleBlob, data)

			status, resp := ta.invoke(sampleBlob, data, tt.binary, tt.metadataFirst)
			if status != http.StatusOK {
				t.Fatalf("status %d, logs %q", status, resp.Logs)
			}
			if len(resp.Logs) == 0 || !strings.Contains(resp.Logs[0], "indexed 32 records") {
				t.Fatalf("logs %q do not report 32 records", resp.Logs)
			}
			if n := ta.countRows(index.TableEvents); n != 32 {
				t.Fatalf("%d event rows, want 32", n)
			}
			// The polling source fires again with the whole blob: nothing new.
			status, resp = ta.invoke(sampleBlob, data, tt.binary, tt.metadataFirst)
			if status != http.StatusOK || !strings.Contains(resp.Logs[0], "up to date") {
				t.Fatalf("re-fire: %d %q", status, resp.Logs)
			}
			if n := ta.countRows(index.TableEvents); n != 32 {
				t.Fatalf("%d event rows after re-fire, want 32", n)
			}
		})
	}
}

func TestBlobTriggerReportsBadRecordsWith200(t *testing.T) {
	ta := newTestApp(t, keepSamples)
	good := samples(t)
	first := bytes.IndexByte(good, '\n') + 1
	data := append(append(append([]byte(nil), good[:first]...), "{not json\n"...), good[first:]...)
	ta.put(sampleBlob, data)
	status, resp := ta.invoke(sampleBlob, data, true, false)
	if status != http.StatusOK {
		t.Fatalf("status %d: a bad record must not make the host retry", status)
	}
	want := fmt.Sprintf("bad record skipped: blob %s byte %d", sampleBlob, first)
	if !strings.Contains(strings.Join(resp.Logs, "\n"), want) {
		t.Fatalf("logs %q lack %q", resp.Logs, want)
	}
	if n := ta.countRows(index.TableEvents); n != 32 {
		t.Fatalf("%d rows, want the 32 good records", n)
	}
}

func TestBlobTriggerUnusableInvocationIs200(t *testing.T) {
	ta := newTestApp(t, nil)
	for _, body := range []string{"", "{", `{"Data":{},"Metadata":{}}`, `[1,2]`} {
		resp, err := http.Post(ta.srv.URL+"/BlobTrigger", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("body %q: status %d %q; a retry cannot fix it, so 200 with Logs", body, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

func TestBlobTriggerMissingBlob(t *testing.T) {
	ta := newTestApp(t, nil)
	status, resp := ta.invoke(sampleBlob, nil, true, false)
	if status != http.StatusOK || !strings.Contains(resp.Logs[0], "blob not found") {
		t.Fatalf("%d %q", status, resp.Logs)
	}
}

// When storage cannot be reached the host must retry: a 5xx.
func TestBlobTriggerStorageDownIs503(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the SDK's retries")
	}
	down := "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + config.DevAccountKey +
		";BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
	ta := newTestApp(t, nil)
	s := *ta.app.settings
	s.Logs, _ = config.ParseConnectionString(down)
	s.Index = s.Logs
	s.Logs.Setting, s.Index.Setting = config.SettingLogsStorage, config.SettingLogsStorage
	broken, err := newApp(&s, ta.app.log)
	if err != nil {
		t.Fatal(err)
	}
	ta.srv.Config.Handler = broken.routes()
	start := time.Now()
	status, resp := ta.invoke(sampleBlob, []byte("{}\n"), true, false)
	if status != http.StatusServiceUnavailable || !strings.Contains(resp.Logs[0], "ingest failed") {
		t.Fatalf("status %d logs %q, want 503", status, resp.Logs)
	}
	t.Logf("503 after %v of SDK retries", time.Since(start).Round(time.Millisecond))
}

func TestReadinessAndUnknownPaths(t *testing.T) {
	ta := newTestApp(t, nil)
	if status, _ := ta.get("/"); status != http.StatusOK {
		t.Fatalf("GET / = %d", status)
	}
	status, body := ta.get("/api/audit/nothing-here")
	if status != http.StatusNotFound || body["error"] == "" {
		t.Fatalf("unknown API path: %d %v", status, body)
	}
}

// A record older than RetentionDays is not indexed — the next retention
// would delete it — but counted and reported (issue 10 item 5).
func TestBlobTriggerSkipsRecordsOlderThanRetention(t *testing.T) {
	ta := newTestApp(t, map[string]string{config.SettingRetentionDays: "30"})
	now := time.Now().UTC()
	hour := now.Truncate(time.Hour)
	name := ingesttest.BlobName("vault7", hour)
	// Azure Monitor's late records can be old; these two are as old as
	// retention allows and one day older.
	cutoff := now.Truncate(24*time.Hour).AddDate(0, 0, -30)
	data := append(ingesttest.Record("vault7", cutoff.Add(-100*time.Nanosecond), 1), ingesttest.Record("vault7", cutoff.AddDate(0, 0, -1), 2)...)
	data = append(data, ingesttest.Record("vault7", cutoff, 3)...)
	data = append(data, ingesttest.Records("vault7", hour, 10, 4)...)
	ta.put(name, data)

	status, resp := ta.invoke(name, data, true, false)
	if status != http.StatusOK || !strings.Contains(resp.Logs[0], "indexed 5 records") || !strings.Contains(resp.Logs[0], "2 records older than retention") {
		t.Fatalf("%d %q: want 5 indexed and 2 older than retention", status, resp.Logs)
	}
	if n := ta.countRows(index.TableEvents); n != 5 {
		t.Fatalf("%d event rows, want 5", n)
	}
	// Retention run now deletes nothing ingest wrote: the two agree on the
	// boundary.
	rep, err := ta.app.catchup.Retain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := ta.countRows(index.TableEvents); n != 5 || rep.Deleted != 0 {
		t.Fatalf("retention deleted %d rows, %d events left; want 0 and 5", rep.Deleted, n)
	}
	_, body := ta.get("/api/audit/status")
	blobs, _ := body["blobs"].([]any)
	if len(blobs) != 1 || blobs[0].(map[string]any)["tooOld"] != float64(2) {
		t.Fatalf("status %v: want the blob with tooOld 2", body)
	}
}
