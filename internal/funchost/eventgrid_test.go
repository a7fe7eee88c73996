package funchost_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
)

// hostEventGridBody is an Event Grid trigger invocation as the host sends
// it to a custom handler: the event's text (indented, as the extension's
// JToken→string converter writes it) encoded twice in Data, the event's
// data object in Metadata.
const hostEventGridBody = `{"Data":{"eventGridEvent":"\"{\\r\\n  \\\"topic\\\": \\\"/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/stkvlogseus\\\",\\r\\n` +
	`  \\\"subject\\\": \\\"/blobServices/default/containers/insights-logs-auditevent/blobs/` + blobName + `\\\",\\r\\n` +
	`  \\\"eventType\\\": \\\"Microsoft.Storage.BlobCreated\\\",\\r\\n  \\\"id\\\": \\\"831e1650-001e-001b-66ab-eeb76e069631\\\",\\r\\n` +
	`  \\\"data\\\": {\\r\\n    \\\"api\\\": \\\"PutBlob\\\",\\r\\n    \\\"eTag\\\": \\\"0x8DC1A2B3C4D5E6F\\\",\\r\\n    \\\"contentLength\\\": 0,\\r\\n    \\\"blobType\\\": \\\"AppendBlob\\\",\\r\\n` +
	`    \\\"url\\\": \\\"https://stkvlogseus.blob.core.windows.net/insights-logs-auditevent/` + blobName + `\\\"\\r\\n  },\\r\\n` +
	`  \\\"dataVersion\\\": \\\"\\\",\\r\\n  \\\"metadataVersion\\\": \\\"1\\\",\\r\\n  \\\"eventTime\\\": \\\"2026-03-01T10:00:03.1234567Z\\\"\\r\\n}\""},` +
	`"Metadata":{"data":{"api":"PutBlob","eTag":"0x8DC1A2B3C4D5E6F","contentLength":0,"blobType":"AppendBlob","url":"https://stkvlogseus.blob.core.windows.net/insights-logs-auditevent/` + blobName + `"},` +
	`"sys":{"MethodName":"EventGridTrigger","UtcNow":"2026-03-01T10:00:04.1234567Z","RandGuid":"9b2f2c8e-4b7e-4f7a-9a57-0c1f2b3c4d5e"}}}`

func TestEventGridEventFromTheHost(t *testing.T) {
	inv, err := funchost.ReadInvocation(strings.NewReader(hostEventGridBody), 0, "eventGridEvent")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := inv.EventGridEvents("eventGridEvent")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1", len(evs))
	}
	e := evs[0]
	if e.EventType != funchost.EventTypeBlobCreated || e.ID != "831e1650-001e-001b-66ab-eeb76e069631" ||
		!strings.HasSuffix(e.Topic, "/storageAccounts/stkvlogseus") || !strings.HasSuffix(e.Subject, "/PT1H.json") ||
		!e.EventTime.Equal(time.Date(2026, 3, 1, 10, 0, 3, 123456700, time.UTC)) {
		t.Errorf("event = %+v", e)
	}
	d, err := e.BlobCreated()
	if err != nil {
		t.Fatal(err)
	}
	want := funchost.BlobCreatedData{API: "PutBlob", URL: "https://stkvlogseus.blob.core.windows.net/insights-logs-auditevent/" + blobName,
		BlobType: "AppendBlob", ETag: `"0x8DC1A2B3C4D5E6F"`}
	if d != want {
		t.Errorf("data = %+v, want %+v", d, want)
	}
	// The event is held; every other binding's data is still only sized.
	if inv.DataBytes["eventGridEvent"] == 0 || len(inv.Data) != 1 {
		t.Errorf("DataBytes %v Data %v", inv.DataBytes, inv.Data)
	}
}

// hosttest builds what the host sends: both delivery schemas read back
// to the same event.
func TestEventGridRequestRoundTrip(t *testing.T) {
	for _, cloud := range []bool{false, true} {
		in := hosttest.EventGridInvocation{Name: blobName, AccountURL: "https://stkvlogsneu.blob.core.windows.net", ETag: "0x8DCAB",
			ContentLength: 17, ID: "id-1", EventTime: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), CloudEvents: cloud}
		req, err := hosttest.NewEventGridRequest(context.Background(), "http://127.0.0.1:1", in)
		if err != nil {
			t.Fatal(err)
		}
		if req.URL.Path != "/EventGridTrigger" || req.Header.Get(hosttest.HeaderInvocationID) == "" {
			t.Errorf("request %s %v", req.URL, req.Header)
		}
		body, _ := io.ReadAll(req.Body)
		var top struct {
			Data     map[string]json.RawMessage
			Metadata map[string]json.RawMessage
		}
		if err := json.Unmarshal(body, &top); err != nil {
			t.Fatal(err)
		}
		// Data's value is a string holding a JSON string: encoded twice.
		var once, twice string
		if json.Unmarshal(top.Data["eventGridEvent"], &once) != nil || json.Unmarshal([]byte(once), &twice) != nil || !strings.Contains(twice, "\n  ") {
			t.Errorf("the event is not an indented text encoded twice: %.80s", top.Data["eventGridEvent"])
		}
		if top.Metadata["data"][0] != '{' || top.Metadata["sys"] == nil {
			t.Errorf("Metadata = %s", body)
		}
		inv, err := funchost.ReadInvocation(strings.NewReader(string(body)), 0, "eventGridEvent")
		if err != nil {
			t.Fatal(err)
		}
		evs, err := inv.EventGridEvents("eventGridEvent")
		if err != nil || len(evs) != 1 {
			t.Fatalf("events %v, %v", evs, err)
		}
		d, err := evs[0].BlobCreated()
		if err != nil {
			t.Fatal(err)
		}
		if evs[0].EventType != funchost.EventTypeBlobCreated || evs[0].ID != "id-1" || !evs[0].EventTime.Equal(in.EventTime) ||
			d.URL != in.EventURL() || d.ETag != `"0x8DCAB"` || d.ContentLength != 17 || d.BlobType != "AppendBlob" || d.API != "PutBlob" ||
			evs[0].Topic != "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-logs/providers/Microsoft.Storage/storageAccounts/stkvlogsneu" {
			t.Errorf("cloud=%v: %+v %+v", cloud, evs[0], d)
		}
	}
}

func TestEventGridEventShapes(t *testing.T) {
	const ev = `{"id":"a","eventType":"Microsoft.Storage.BlobCreated","data":{"url":"https://x.blob.core.windows.net/c/b"}}`
	enc := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	tests := []struct {
		name    string
		body    string
		events  int
		wantErr error
	}{
		{"object", `{"Data":{"e":` + ev + `}}`, 1, nil},
		{"encoded once", `{"Data":{"e":` + enc(ev) + `}}`, 1, nil},
		{"encoded twice", `{"Data":{"e":` + enc(enc(ev)) + `}}`, 1, nil},
		{"a batch", `{"Data":{"e":[` + ev + `,` + ev + `]}}`, 2, nil},
		{"a batch encoded twice", `{"Data":{"e":` + enc(enc("["+ev+"]")) + `}}`, 1, nil},
		{"only Metadata data", `{"Data":{},"Metadata":{"data":{"url":"https://x.blob.core.windows.net/c/b"}}}`, 1, nil},
		{"nothing", `{"Data":{"other":"x"},"Metadata":{}}`, 0, funchost.ErrNoEvent},
		{"a number", `{"Data":{"e":5}}`, 0, funchost.ErrMalformed},
		{"a string of text", `{"Data":{"e":"hello"}}`, 0, funchost.ErrMalformed},
		{"thrice encoded", `{"Data":{"e":` + enc(enc(enc(ev))) + `}}`, 0, funchost.ErrMalformed},
		{"array of non-objects", `{"Data":{"e":[1]}}`, 0, funchost.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := funchost.ReadInvocation(strings.NewReader(tt.body), 0, "e")
			if err != nil {
				t.Fatal(err)
			}
			evs, err := inv.EventGridEvents("e")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(evs) != tt.events {
				t.Fatalf("%d events, %v; want %d", len(evs), err, tt.events)
			}
			if d, err := evs[0].BlobCreated(); err != nil || d.URL != "https://x.blob.core.windows.net/c/b" {
				t.Errorf("data %+v, %v", d, err)
			}
		})
	}
	// An event without a url is no BlobCreated kvaudit can use.
	inv, _ := funchost.ReadInvocation(strings.NewReader(`{"Data":{"e":{"data":{"api":"PutBlob"}}}}`), 0, "e")
	evs, err := inv.EventGridEvents("e")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evs[0].BlobCreated(); !errors.Is(err, funchost.ErrMalformed) {
		t.Errorf("no url: %v", err)
	}
	// A kept value counts against the metadata limit.
	big := `{"Data":{"e":"` + strings.Repeat("x", 2000) + `"}}`
	if _, err := funchost.ReadInvocation(strings.NewReader(big), 1000, "e"); !errors.Is(err, funchost.ErrTooLarge) {
		t.Errorf("kept data over the limit: %v", err)
	}
	if _, err := funchost.ReadInvocation(strings.NewReader(big), 1000); err != nil {
		t.Errorf("skipped data over the limit: %v", err)
	}
}
