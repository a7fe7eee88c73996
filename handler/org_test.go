package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
)

// orgBlob is the Azure Monitor path of a vault's blob of hour, in
// subscription sub.
func orgBlob(sub, vault string, hour time.Time) string {
	return fmt.Sprintf("resourceId=/SUBSCRIPTIONS/%s/RESOURCEGROUPS/RG-%s/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(sub), strings.ToUpper(vault), strings.ToUpper(vault), hour.Year(), hour.Month(), hour.Day(), hour.Hour())
}

// orgRecord is one successful SecretGet of caller on vault at t,
// correlation id c-<id>.
func orgRecord(sub, vault, caller string, t time.Time, id int) []byte {
	return fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/%s/RESOURCEGROUPS/RG-%s/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"OK","durationMs":"5","callerIpAddress":"10.1.0.%d","correlationId":"c-%06d","identity":{"claim":{"oid":"%s","appid":"app-1"}},"properties":{"id":"https://%s.vault.azure.net/secrets/s%d/v1","clientInfo":"go-test","httpStatusCode":200,"requestUri":"https://%s.vault.azure.net/secrets/s%d?api-version=7.4","tlsVersion":"TLS1_2"}}`+"\n",
		t.UTC().Format("2006-01-02T15:04:05.0000000Z"), strings.ToUpper(sub), strings.ToUpper(vault), strings.ToUpper(vault), id%250, id, caller, vault, id%7, vault, id%7)
}

// orgAccount is one emulated regional logs account: an Azurite of its own
// serving an account of its own name.
type orgAccount struct {
	t     *testing.T
	az    *azuritetest.Azurite
	blobs *azblob.Client
}

func newOrgAccount(t *testing.T, name string) *orgAccount {
	t.Helper()
	az, err := azuritetest.Start(azuritetest.Options{Account: name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { az.Stop() })
	blobs, err := azblob.NewClientFromConnectionString(az.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := blobs.CreateContainer(context.Background(), "insights-logs-auditevent", nil); err != nil {
		t.Fatal(err)
	}
	return &orgAccount{t: t, az: az, blobs: blobs}
}

// appendTo creates name (as Azure Monitor does: an empty append blob)
// when create is set, then appends data.
func (o *orgAccount) appendTo(name string, create bool, data []byte) {
	o.t.Helper()
	ab := o.blobs.ServiceClient().NewContainerClient("insights-logs-auditevent").NewAppendBlobClient(name)
	ctx := context.Background()
	if create {
		if _, err := ab.Create(ctx, nil); err != nil {
			o.t.Fatal(err)
		}
	}
	if len(data) > 0 {
		if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(data)), nil); err != nil {
			o.t.Fatal(err)
		}
	}
}

// TestOrganizationAcrossRegions runs the handler binary over two regional
// logs accounts (two Azurites, each serving its own account) and an index
// account (a third), as one kvaudit for an organization (issue 17): vaults
// in both regions and two subscriptions, BlobCreated from both accounts
// through the Event Grid trigger in the host's wire format, appends in
// both followed by CatchUp, and one query API answering across both —
// a caller's events across vaults of both regions, stats and detections
// across both, each record exactly once. The same blob path in both
// accounts is two sources. An event naming a blob anywhere else is
// answered 200 and not read.
func TestOrganizationAcrossRegions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler and starts two Azurites of its own")
	}
	index := azuritetest.Require(t)
	weu := newOrgAccount(t, "logsweu")
	eus := newOrgAccount(t, "logseus")
	bin := buildHandler(t)

	const (
		subA, subB = "aaaa1111-0000-0000-0000-000000000001", "bbbb2222-0000-0000-0000-000000000002"
		shared     = "oid-everywhere" // one caller, in vaults of both regions
	)
	hour := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	at := func(i int) time.Time { return hour.Add(time.Duration(i) * time.Second) }
	kvWeu, kvEus := orgBlob(subA, "kv-weu", hour), orgBlob(subB, "kv-eus", hour)
	moved := orgBlob(subA, "kv-moved", hour) // the same path in both accounts

	// Records: ids 0… in West Europe, 1000… in East US.
	gen := func(sub, vault string, first, n int, caller func(i int) string) []byte {
		var b []byte
		for i := first; i < first+n; i++ {
			b = append(b, orgRecord(sub, vault, caller(i), at(i%3000), i)...)
		}
		return b
	}
	everyOther := func(i int) string {
		if i%2 == 0 {
			return shared
		}
		return "oid-" + strconv.Itoa(i%3)
	}

	port := freePort(t)
	prefix := fmt.Sprintf("org%d", time.Now().UnixNano()%1e9)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		config.SettingLogsStorage + "=" + weu.az.ConnectionString,
		config.SettingLogsRegion + "=westeurope",
		config.SettingLogsAccounts + "=logseus:eastus",
		config.LogsAccountSetting("logseus") + "=" + eus.az.ConnectionString,
		config.SettingIndexStorage + "=" + index.ConnectionString,
		config.SettingTablePrefix + "=" + prefix,
		config.SettingCustomPort + "=" + strconv.Itoa(port),
	}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	h := &identityHandler{t: t, url: "http://127.0.0.1:" + strconv.Itoa(port), out: out}
	waitReady(t, h, exited)

	event := func(acct *orgAccount, name string, length int) (int, funchost.Response) {
		t.Helper()
		req, err := hosttest.NewEventGridRequest(context.Background(), h.url, hosttest.EventGridInvocation{
			Name: name, AccountURL: acct.az.BlobURL, ContentLength: int64(length)})
		if err != nil {
			t.Fatal(err)
		}
		status, resp, err := hosttest.Do(http.DefaultClient, req)
		if err != nil && (status == 0 || resp.Logs == nil) {
			t.Fatalf("%v\n%s", err, h.stderr())
		}
		return status, resp
	}
	catchUp := func() funchost.Response {
		t.Helper()
		req, err := hosttest.NewTimerRequest(context.Background(), h.url, hosttest.TimerInvocation{})
		if err != nil {
			t.Fatal(err)
		}
		status, resp, err := hosttest.Do(http.DefaultClient, req)
		if err != nil || status != http.StatusOK {
			t.Fatalf("CatchUp: %d %v %q\n%s", status, err, resp.Logs, h.stderr())
		}
		return resp
	}

	// Azure Monitor creates each hour's blob (BlobCreated) and appends.
	weu.appendTo(kvWeu, true, gen(subA, "kv-weu", 0, 40, everyOther))
	eus.appendTo(kvEus, true, gen(subB, "kv-eus", 1000, 30, everyOther))
	weu.appendTo(moved, true, gen(subA, "kv-moved", 2000, 6, everyOther))
	eus.appendTo(moved, true, gen(subA, "kv-moved", 3000, 4, everyOther))
	for _, n := range []struct {
		acct   *orgAccount
		name   string
		events int
	}{{weu, kvWeu, 40}, {eus, kvEus, 30}, {weu, moved, 6}, {eus, moved, 4}} {
		status, resp := event(n.acct, n.name, 0)
		if status != http.StatusOK || !strings.Contains(strings.Join(resp.Logs, "\n"), fmt.Sprintf("indexed %d records", n.events)) {
			t.Fatalf("EventGridTrigger for %s: %d %q\n%s", n.name, status, resp.Logs, h.stderr())
		}
	}

	// Events kvaudit must not follow: another account's URL, another
	// container, a host that only looks like the account's.
	for _, u := range []string{
		"http://127.0.0.1:1/logsevil/insights-logs-auditevent/" + kvWeu,
		strings.Replace(weu.az.BlobURL, "logsweu", "logsother", 1) + "/insights-logs-auditevent/" + kvWeu,
		weu.az.BlobURL + "/other-container/" + kvWeu,
		"https://logsweu.blob.core.windows.net.example.org/insights-logs-auditevent/" + kvWeu,
	} {
		req, err := hosttest.NewEventGridRequest(context.Background(), h.url, hosttest.EventGridInvocation{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		status, resp, err := hosttest.Do(http.DefaultClient, req)
		if err != nil || status != http.StatusOK || !strings.Contains(strings.Join(resp.Logs, "\n"), "not read") {
			t.Fatalf("event naming %s: %d %v %q", u, status, err, resp.Logs)
		}
	}

	// Appends in both regions, one cut mid-record; CatchUp follows them.
	weu.appendTo(kvWeu, false, gen(subA, "kv-weu", 40, 20, everyOther))
	tail := gen(subB, "kv-eus", 1030, 10, everyOther)
	eus.appendTo(kvEus, false, tail[:len(tail)-25])
	catchUp()
	eus.appendTo(kvEus, false, tail[len(tail)-25:])
	resp := catchUp()
	if !strings.Contains(resp.Logs[0], "1 records indexed") {
		t.Fatalf("CatchUp after the cut record completed: %q", resp.Logs)
	}
	// West Europe: 60 + 6; East US: 40 + 4.
	const total = 110

	get := func(path string, v any) {
		t.Helper()
		code, body := h.get(path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
	type event2 struct {
		Vault          string `json:"vault"`
		SubscriptionID string `json:"subscriptionId"`
		CorrelationID  string `json:"correlationId"`
		Identity       struct {
			ObjectID string `json:"objectId"`
		} `json:"identity"`
		Source struct {
			Account string `json:"account"`
			Blob    string `json:"blob"`
		} `json:"source"`
	}
	all := func(sel string) []event2 {
		t.Helper()
		var out []event2
		cont := ""
		for range 100 {
			var page struct {
				Events       []event2 `json:"events"`
				Continuation string   `json:"continuation"`
			}
			p := "/api/audit/events?limit=1000&" + sel
			if cont != "" {
				p += "&continuation=" + url.QueryEscape(cont)
			}
			get(p, &page)
			out = append(out, page.Events...)
			if cont = page.Continuation; cont == "" {
				return out
			}
		}
		t.Fatal("events never ended")
		return nil
	}
	once := func(what string, evs []event2, want int) {
		t.Helper()
		seen := map[string]bool{}
		for _, e := range evs {
			if seen[e.CorrelationID] {
				t.Errorf("%s: %s twice", what, e.CorrelationID)
			}
			seen[e.CorrelationID] = true
			id, _ := strconv.Atoi(strings.TrimPrefix(e.CorrelationID, "c-"))
			wantAcct := "logsweu"
			if id >= 1000 && id < 2000 || id >= 3000 {
				wantAcct = "logseus"
			}
			if e.Source.Account != wantAcct || strings.HasPrefix(e.Source.Blob, "@") || !strings.HasPrefix(e.Source.Blob, "resourceId=") {
				t.Errorf("%s: %s from %+v, want account %s", what, e.CorrelationID, e.Source, wantAcct)
			}
		}
		if len(seen) != want {
			t.Errorf("%s: %d events, want %d", what, len(seen), want)
		}
	}

	// A caller across vaults of both regions.
	mine := all("caller=" + shared)
	once("the shared caller", mine, total/2)
	vaults := map[string]int{}
	for _, e := range mine {
		vaults[e.Vault]++
		if e.Identity.ObjectID != shared {
			t.Errorf("caller query answered %+v", e)
		}
	}
	if vaults["kv-weu"] != 30 || vaults["kv-eus"] != 20 || vaults["kv-moved"] != 5 {
		t.Errorf("the shared caller's events by vault: %v", vaults)
	}
	// Every vault of both regions, each record once.
	n := 0
	for _, v := range []string{"kv-weu", "kv-eus", "kv-moved"} {
		evs := all("vault=" + v)
		n += len(evs)
		once(v, evs, map[string]int{"kv-weu": 60, "kv-eus": 40, "kv-moved": 10}[v])
	}
	if n != total {
		t.Errorf("%d events in all vaults, want %d", n, total)
	}

	// Stats across both: the caller's total, and each vault's counts.
	var st struct {
		Total  int64 `json:"total"`
		Groups []struct {
			Key   string `json:"key"`
			Count int64  `json:"count"`
		} `json:"groups"`
	}
	get("/api/audit/stats?caller="+shared+"&by=ip", &st)
	if st.Total != total/2 {
		t.Errorf("stats of the shared caller: total %d, want %d", st.Total, total/2)
	}
	for v, want := range map[string]int64{"kv-weu": 60, "kv-eus": 40, "kv-moved": 10} {
		get("/api/audit/stats?vault="+v+"&by=caller", &st)
		if st.Total != want {
			t.Errorf("stats of %s: total %d, want %d", v, st.Total, want)
		}
	}

	// Detections across both: the shared caller's 55 gets in one day, in
	// three vaults of two regions, are one mass-retrieval finding.
	var det struct {
		Findings []struct {
			Kind   string `json:"kind"`
			Caller string `json:"caller"`
			Count  int64  `json:"count"`
			Vaults []struct {
				Key   string `json:"key"`
				Count int64  `json:"count"`
			} `json:"vaults"`
		} `json:"findings"`
	}
	get("/api/audit/detections?threshold=50", &det)
	found := false
	for _, f := range det.Findings {
		if f.Kind != "massSecretRetrieval" {
			continue
		}
		if f.Caller != shared || f.Count != total/2 || len(f.Vaults) != 3 {
			t.Errorf("mass retrieval finding %+v, want %s with %d gets in 3 vaults", f, shared, total/2)
		}
		found = true
	}
	if !found {
		t.Errorf("no mass retrieval finding across regions: %+v", det.Findings)
	}

	// The vault list: each vault's region and subscription.
	var vl struct {
		Vaults  []string `json:"vaults"`
		Details []struct {
			Name         string   `json:"name"`
			Subscription string   `json:"subscription"`
			Accounts     []string `json:"accounts"`
			Regions      []string `json:"regions"`
		} `json:"details"`
	}
	get("/api/audit/vaults", &vl)
	if !slices.Equal(vl.Vaults, []string{"kv-eus", "kv-moved", "kv-weu"}) || len(vl.Details) != 3 {
		t.Fatalf("vaults %+v", vl)
	}
	for _, d := range vl.Details {
		want := map[string][]string{"kv-weu": {"westeurope"}, "kv-eus": {"eastus"}, "kv-moved": {"eastus", "westeurope"}}[d.Name]
		sub := map[string]string{"kv-weu": subA, "kv-eus": subB, "kv-moved": subA}[d.Name]
		if !slices.Equal(d.Regions, want) || d.Subscription != sub {
			t.Errorf("vault %s: regions %v subscription %s, want %v %s", d.Name, d.Regions, d.Subscription, want, sub)
		}
	}

	// Status: per account and region, nothing left.
	var status struct {
		LagBytes int64 `json:"lagBytes"`
		Accounts []struct {
			Account string `json:"account"`
			Region  string `json:"region"`
			Blobs   int    `json:"blobs"`
			Error   string `json:"error"`
		} `json:"accounts"`
	}
	get("/api/audit/status", &status)
	if status.LagBytes != 0 || len(status.Accounts) != 2 ||
		status.Accounts[0].Account != "logsweu" || status.Accounts[0].Region != "westeurope" || status.Accounts[0].Blobs != 2 ||
		status.Accounts[1].Account != "logseus" || status.Accounts[1].Region != "eastus" || status.Accounts[1].Blobs != 2 {
		t.Errorf("status %+v", status)
	}
}

// waitReady waits until the handler answers GET /, as the host probes it.
func waitReady(t *testing.T, h *identityHandler, exited <-chan struct{}) {
	t.Helper()
	for try := 0; ; try++ {
		resp, err := http.Get(h.url + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("handler exited at start:\n%s", h.stderr())
		case <-time.After(50 * time.Millisecond):
		}
		if try == 400 {
			t.Fatalf("handler not answering on %s:\n%s", h.url, h.stderr())
		}
	}
}
