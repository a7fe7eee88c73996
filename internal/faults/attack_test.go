package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"

	"github.com/kvaudit/kvaudit/internal/index"
)

// TestAttackLongRandomUserAgents is issue 15's item 1 through the handler
// binary: one caller reads one secret 6,000 times in an hour from one IP,
// each request with its own random User-Agent of 300–4,000 characters.
// Before, posting rows of that caller, IP and object grew past Table
// Storage's 1 MiB, were refused and skipped: 3,772 of 6,000 requests were
// gone from every lookup, from stats by caller, IP and object and from the
// mass-retrieval finding. Every answer must say 6,000.
func TestAttackLongRandomUserAgents(t *testing.T) {
	slow(t)
	attackUserAgents(t, 6000)
}

// attackUserAgents runs the attack with n requests and checks every
// answer of the API.
func attackUserAgents(t *testing.T, n int) {
	e := newEnv(t, nil)
	name := e.blob(0)
	rnd := rand.New(rand.NewPCG(15, 6000))
	var data []byte
	for i := range n {
		ua := randomUA(rnd, 300+rnd.IntN(3701))
		data = fmt.Appendf(data, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"OK","durationMs":"3","callerIpAddress":"203.0.113.7","correlationId":"%s-%07d","identity":{"claim":{"oid":"a77ac4e2-0000-4000-8000-00000000a77a"}},"properties":{"id":"https://%s.vault.azure.net/secrets/db-password/v1","clientInfo":%q,"httpStatusCode":200,"requestUri":"https://%s.vault.azure.net/secrets/db-password?api-version=7.4","tlsVersion":"TLS1_2"}}`+"\n",
			e.hour.Add(time.Duration(i)*500*time.Millisecond).Format("2006-01-02T15:04:05.0000000Z"), strings.ToUpper(e.vault),
			e.corr, i, e.vault, ua, e.vault)
	}
	ab := e.cc.NewAppendBlobClient(name)
	ctx := context.Background()
	if _, err := ab.Create(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for rest := data; len(rest) > 0; {
		k := min(len(rest), 4<<20)
		if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(rest[:k])), nil); err != nil {
			t.Fatal(err)
		}
		rest = rest[k:]
	}
	e.mu.Lock()
	for i := range n {
		e.written[fmt.Sprintf("%s-%07d", e.corr, i)]++
	}
	e.lengths[name] = int64(len(data))
	e.mu.Unlock()
	e.step("blob of %d records, %d MiB", n, len(data)>>20)

	e.startHandler()
	e.settle()
	v := e.finish("attack: random User-Agents", fmt.Sprintf("%d requests of one caller, IP and object in an hour, each with a random 300–4,000-character User-Agent", n),
		emulatorLoss{}, "")

	window := "&from=" + url.QueryEscape(e.hour.Format(time.RFC3339)) + "&to=" + url.QueryEscape(e.hour.Add(time.Hour).Format(time.RFC3339))
	var got []string
	for _, sel := range []string{"vault=" + e.vault, "caller=a77ac4e2-0000-4000-8000-00000000a77a", "ip=203.0.113.7", "object=db-password"} {
		events := e.countEvents(sel + window)
		if events != n {
			t.Errorf("events?%s: %d, want %d", sel, events, n)
		}
		got = append(got, fmt.Sprintf("events by %s %d", strings.SplitN(sel, "=", 2)[0], events))
	}
	for _, q := range []string{"vault=" + e.vault + "&by=caller", "caller=a77ac4e2-0000-4000-8000-00000000a77a&by=caller", "ip=203.0.113.7&by=ip",
		"object=db-password&by=object", "vault=" + e.vault + "&by=ip", "vault=" + e.vault + "&by=object"} {
		var st struct {
			Total  int64 `json:"total"`
			Groups []struct {
				Key   string `json:"key"`
				Count int64  `json:"count"`
			} `json:"groups"`
		}
		e.api("stats?"+q+window, &st)
		if st.Total != int64(n) || len(st.Groups) != 1 || st.Groups[0].Count != int64(n) {
			t.Errorf("stats?%s: total %d, groups %+v; want %d in one group", q, st.Total, st.Groups, n)
		}
		got = append(got, fmt.Sprintf("stats %s %d", q[strings.Index(q, "by="):], st.Total))
	}
	var d struct {
		Findings []struct {
			Kind   string `json:"kind"`
			Caller string `json:"caller"`
			Count  int64  `json:"count"`
		} `json:"findings"`
	}
	e.api("detections?vault="+e.vault+window, &d)
	var mass int64
	for _, f := range d.Findings {
		if f.Kind == "massSecretRetrieval" {
			mass = f.Count
		}
	}
	if mass != int64(n) {
		t.Errorf("mass retrieval counts %d, want %d", mass, n)
	}
	got = append(got, fmt.Sprintf("mass retrieval %d", mass))
	tableMu.Lock()
	table[len(table)-1].Note = strings.Join(got, ", ")
	tableMu.Unlock()
	e.step("%s; %s", v, strings.Join(got, ", "))
}

// countEvents follows an events query of the handler's API to its end
// (pages of 1000, at most 100 pages) and counts the events.
func (e *env) countEvents(query string) int {
	e.t.Helper()
	n, cont := 0, ""
	for page := 0; page < 100; page++ {
		q := "events?limit=1000&format=ndjson&" + query
		if cont != "" {
			q += "&continuation=" + url.QueryEscape(cont)
		}
		body := e.apiRaw(q)
		cont = ""
		for _, line := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
			var l struct {
				Continuation string `json:"continuation"`
			}
			if len(line) == 0 {
				continue
			}
			if err := json.Unmarshal(line, &l); err == nil && l.Continuation != "" {
				cont = l.Continuation
				continue
			}
			n++
		}
		if cont == "" {
			return n
		}
	}
	e.t.Fatalf("%s: more than 100 pages", query)
	return n
}

// api GETs /api/audit/<path> from the handler and decodes the answer.
func (e *env) api(path string, v any) {
	e.t.Helper()
	if err := json.Unmarshal(e.apiRaw(path), v); err != nil {
		e.t.Fatalf("%s: %v", path, err)
	}
}

func (e *env) apiRaw(path string) []byte {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.handler().url+"/api/audit/"+path, nil)
	resp, err := invocationClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		e.t.Fatalf("%s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("%s: %d %s", path, resp.StatusCode, b.String())
	}
	return b.Bytes()
}

// randomUA is a User-Agent an attacker chooses: n random characters.
func randomUA(rnd *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/;()._ -"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rnd.IntN(len(alphabet))]
	}
	return string(b)
}

// TestRefusedRowIsNeverSkipped: storage refuses one Events row (here the
// proxy makes it too large, as no row kvaudit builds is) — before, the
// writer logged "refused … skipped" and the checkpoint moved past it, the
// record lost for good. Now the invocation fails without moving the
// checkpoint past the record, the failure shows in status, and once
// storage takes the row again every record is indexed exactly once.
func TestRefusedRowIsNeverSkipped(t *testing.T) {
	e := newEnv(t, nil)
	name := e.blob(0)
	e.append(name, true, 0, 1000, 0)
	target := fmt.Sprintf("%s-%07d", e.corr, 500)
	events := e.tables.Name(index.TableEvents)
	var refusing atomic.Bool
	refusing.Store(true)
	var refused atomic.Int64
	e.table.before = func(x *exchange) {
		if !refusing.Load() {
			return
		}
		for _, w := range x.Writes {
			if w.Table != events || correlationID(w.Props, w.RK) != target {
				continue
			}
			body, _ := io.ReadAll(x.Req.Body)
			key := []byte(`"RowKey":"` + w.RK + `"`)
			body = bytes.Replace(body, key, append(append(key, `,"Zpad":"`...), append(bytes.Repeat([]byte("x"), 70000), '"')...), 1)
			x.Req.Body = io.NopCloser(bytes.NewReader(body))
			x.Req.ContentLength = int64(len(body))
			refused.Add(1)
		}
	}
	e.startHandler()
	ctx, cancel := context.WithTimeout(context.Background(), invocationLimit)
	defer cancel()
	status, logs, err := e.invokeBlob(ctx, name)
	e.step("invocation while storage refuses %s's row: %d %v %s", target, status, err, brief(logs))
	if refused.Load() == 0 {
		t.Fatal("the record's row was never written")
	}
	if !strings.Contains(strings.Join(logs, " "), "refused") {
		t.Errorf("the invocation's logs do not say a row was refused: %s", brief(logs))
	}
	off, tries, lastErr, err := e.checkpoint(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	recordAt := int64(len(records(e.vault, e.corr, e.hour, 0, 500, 0)))
	if off > recordAt {
		t.Fatalf("checkpoint at %d, past the refused record at %d", off, recordAt)
	}
	if tries == 0 || !strings.Contains(lastErr, "refused") {
		t.Errorf("checkpoint tries %d, last error %q: the failure is not recorded", tries, lastErr)
	}
	raw := e.apiRaw("status")
	if !bytes.Contains(raw, []byte("refused")) {
		t.Errorf("status does not show the refused row: %s", raw)
	}
	refusing.Store(false)
	e.settle()
	e.finish("row refused by storage", "one Events row refused (too large) on every write, then accepted", emulatorLoss{},
		fmt.Sprintf("first invocation %d, checkpoint held at %d (record at %d), tries %d", status, off, recordAt, tries))
}
