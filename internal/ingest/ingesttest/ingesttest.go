// Package ingesttest gives tests above package ingest a private container
// and index in the shared Azurite, and Key Vault records and blob paths to
// put in them. It imports package testing only through testing.TB.
package ingesttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/ingest"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Env is one test's container and tables, and an Ingester over them.
type Env struct {
	T         testing.TB
	Container *container.Client
	Tables    *index.Tables
	Ingester  *ingest.Ingester
	Log       *slog.Logger

	svc *service.Client // of the Env's Azurite, for Account
}

// New makes a private container and table prefix in the Azurite that
// azuritetest.Main started (a test binary's TestMain must call it).
func New(t testing.TB) *Env {
	t.Helper()
	return NewIn(t, azuritetest.Require(t))
}

// NewIn is New in a given Azurite (a persistent one, for restart tests).
func NewIn(t testing.TB, az *azuritetest.Azurite) *Env {
	t.Helper()
	acct, err := config.ParseConnectionString(az.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := azstore.NewBlobClient(acct)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := azstore.NewTableClient(acct)
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := fmt.Sprintf("%x", b)
	cc := bc.ServiceClient().NewContainerClient("logs-" + id)
	if _, err := cc.Create(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	tables := index.NewTables(tc, "t"+id)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return &Env{T: t, Container: cc, Tables: tables, Log: log, svc: bc.ServiceClient(),
		Ingester: &ingest.Ingester{Container: cc, Tables: tables, Log: log, Concurrency: 4}}
}

// Account adds a logs account named name to the Env's Ingester (another
// private container of the same Azurite: to ingest, an account is a
// container) and returns an Env whose Container and Append are that
// account's; Tables and Ingester are shared. Blobs of the account are
// identified as parse.BlobID(name, path).
func (e *Env) Account(name string) *Env {
	e.T.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	c := e.svc.NewContainerClient(fmt.Sprintf("logs-%x", b))
	if _, err := c.Create(context.Background(), nil); err != nil {
		e.T.Fatal(err)
	}
	if e.Ingester.Accounts == nil {
		e.Ingester.Accounts = map[string]*container.Client{}
	}
	e.Ingester.Accounts[name] = c
	other := *e
	other.Container = c
	return &other
}

// BlobName is the Azure Monitor path of vault's blob of hour.
func BlobName(vault string, hour time.Time) string {
	hour = hour.UTC()
	return fmt.Sprintf("resourceId=/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(vault), hour.Year(), hour.Month(), hour.Day(), hour.Hour())
}

// Append creates name as an empty append blob when create is set, then
// appends each chunk as Append Blocks of at most 4 MiB, as Azure Monitor does.
func (e *Env) Append(name string, create bool, chunks ...[]byte) {
	e.T.Helper()
	ab := e.Container.NewAppendBlobClient(name)
	ctx := context.Background()
	if create {
		if _, err := ab.Create(ctx, nil); err != nil {
			e.T.Fatal(err)
		}
	}
	for _, c := range chunks {
		for len(c) > 0 {
			n := min(len(c), 4<<20)
			if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(c[:n])), nil); err != nil {
				e.T.Fatal(err)
			}
			c = c[n:]
		}
	}
}

// Rows lists every row of an index table, keyed "PK/RK".
func (e *Env) Rows(short string) map[string]map[string]any {
	e.T.Helper()
	out := map[string]map[string]any{}
	pager := e.Tables.Client(short).NewListEntitiesPager(nil)
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			if strings.Contains(err.Error(), "TableNotFound") {
				return out
			}
			e.T.Fatalf("list %s: %v", short, err)
		}
		for _, raw := range page.Entities {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				e.T.Fatal(err)
			}
			if short == index.TableEvents {
				if err := expand(m); err != nil {
					e.T.Fatalf("%s row %v: %v", short, m["RowKey"], err)
				}
			}
			out[m["PartitionKey"].(string)+"/"+m["RowKey"].(string)] = m
		}
	}
	return out
}

// expand adds to an Events row of layout 2 the fields of the record it
// holds (R), under the property names of layout 1 (index.PropTime …; empty
// strings left out, as layout 1 did), so that a test reads what was
// indexed without decoding rows itself.
func expand(m map[string]any) error {
	packed, err := binaryColumn(m, index.PropRecord)
	if err != nil {
		return err
	}
	if len(packed) == 0 {
		return nil // not layout 2: left as it is
	}
	raw, blob, err := index.DecodeRecord(packed)
	if err != nil {
		return err
	}
	rk, _ := m["RowKey"].(string)
	off, _ := index.RowKeyOffset(rk)
	var d parse.Decoder
	var rec parse.Record
	if err := d.Decode(raw, blob, off, &rec); err != nil {
		return err
	}
	str := func(name, v string) {
		if v != "" {
			m[name] = v
		}
	}
	str(index.PropTime, parse.FormatTime(rec.Time))
	str(index.PropVault, rec.Vault)
	str(index.PropSubscriptionID, rec.SubscriptionID)
	str(index.PropResourceGroup, rec.ResourceGroup)
	str(index.PropResourceID, rec.ResourceID)
	str(index.PropOperationName, rec.OperationName)
	str(index.PropOperationVersion, rec.OperationVersion)
	str(index.PropCategory, rec.Category)
	str(index.PropResultType, rec.ResultType)
	str(index.PropResultSignature, rec.ResultSignature)
	str(index.PropResultDescription, rec.ResultDescription)
	str(index.PropCallerIPAddress, rec.CallerIPAddress)
	str(index.PropCorrelationID, rec.CorrelationID)
	str(index.PropObjectID, rec.Identity.ObjectID)
	str(index.PropUPN, rec.Identity.UPN)
	str(index.PropAppID, rec.Identity.AppID)
	str(index.PropClaims, string(rec.Identity.Claims))
	str(index.PropRequestURI, rec.RequestURI)
	str(index.PropID, rec.ID)
	str(index.PropObjectName, rec.ObjectName)
	str(index.PropObjectType, rec.ObjectType)
	str(index.PropClientInfo, rec.ClientInfo)
	str(index.PropTLSVersion, rec.TLSVersion)
	str(index.PropProperties, string(rec.Properties))
	str(index.PropExtra, string(rec.Extra))
	str(index.PropBlob, rec.Blob)
	if rec.HasDuration {
		m[index.PropDurationMs] = rec.DurationMs
	}
	if rec.HTTPStatusCode != 0 {
		m[index.PropHTTPStatusCode] = float64(rec.HTTPStatusCode)
	}
	m[index.PropStatus] = float64(rec.Status)
	m[index.PropOffset] = strconv.FormatInt(rec.Offset, 10)
	return nil
}

// Postings maps each event found in the posting rows of kind
// (index.KindCaller …) — its Events PartitionKey/RowKey — to the number of
// entries naming it (more than one where postings overlap, which queries
// dedupe).
func (e *Env) Postings(kind string) map[string]int {
	e.T.Helper()
	out := map[string]int{}
	for _, r := range e.Rows(index.TablePostings) {
		pk, _ := r["PartitionKey"].(string)
		k, day, _ := strings.Cut(pk, "|")
		if k != kind {
			continue
		}
		raw, err := json.Marshal(r)
		if err != nil {
			e.T.Fatal(err)
		}
		var pr index.PostingRow
		es, err := index.DecodePostingRow(nil, raw, &pr)
		if err != nil {
			e.T.Fatal(err)
		}
		for _, en := range es {
			out[en.EventPartition(day)+"/"+en.EventRowKey()]++
		}
	}
	return out
}

// CountEvents counts the rows of the Events table by correlation id, so a
// test can see both missing and doubled records.
func (e *Env) CountEvents() map[string]int {
	e.T.Helper()
	out := map[string]int{}
	for _, r := range e.Rows(index.TableEvents) {
		id, _ := r[index.PropCorrelationID].(string)
		out[id]++
	}
	return out
}

// Record is one JSON Lines record of vault at t; i makes its correlation
// id ("c-%06d"), caller, IP and secret vary.
func Record(vault string, t time.Time, i int) []byte { return RecordWith(vault, t, i, "") }

// RecordWith is Record with more properties: extra is spliced into the
// properties object as is (`,"name":value…`).
func RecordWith(vault string, t time.Time, i int, extra string) []byte {
	return fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"OK","durationMs":"%d","callerIpAddress":"10.0.%d.%d","correlationId":"c-%06d","identity":{"claim":{"oid":"oid-%d","upn":"user%d@example.com","appid":"app-1"}},"properties":{"id":"https://%s.vault.azure.net/secrets/s%d/v1","clientInfo":"go-test","httpStatusCode":200,"requestUri":"https://%s.vault.azure.net/secrets/s%d?api-version=7.4","tlsVersion":"TLS1_2"%s}}`+"\n",
		t.UTC().Format("2006-01-02T15:04:05.0000000Z"), strings.ToUpper(vault), i%900, i%7, i%250, i, i%5, i%5, strings.ToLower(vault), i%11, strings.ToLower(vault), i%11, extra)
}

// Ingest runs the Env's Ingester on name and fails the test on an error.
func (e *Env) Ingest(name string) ingest.Result {
	e.T.Helper()
	res, err := e.Ingester.IngestBlob(context.Background(), name)
	if err != nil {
		e.T.Fatalf("IngestBlob(%s): %v", name, err)
	}
	return res
}

// BlobLength is name's length in storage.
func (e *Env) BlobLength(name string) int64 {
	e.T.Helper()
	p, err := e.Container.NewBlobClient(name).GetProperties(context.Background(), nil)
	if err != nil {
		e.T.Fatal(err)
	}
	return *p.ContentLength
}

// Records is n records of vault, one a second from start, ids from first.
func Records(vault string, start time.Time, first, n int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, Record(vault, start.Add(time.Duration(i)*time.Second), first+i)...)
	}
	return b
}

// binaryColumn is the binary column name of row m (as the service returns
// it, base64) with its continuations name1, name2 … joined.
func binaryColumn(m map[string]any, name string) ([]byte, error) {
	var out []byte
	for i := 0; ; i++ {
		prop := name
		if i > 0 {
			prop += strconv.Itoa(i)
		}
		v, ok := m[prop].(string)
		if !ok {
			return out, nil
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
}
