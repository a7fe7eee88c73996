package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest/ingesttest"
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
