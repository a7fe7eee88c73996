package index

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// BenchmarkWriter drives a Writer as ingest does (a Flush every 4 MiB of
// input) over the rows of realistic records, against a transport that
// accepts every transaction at once. It measures the client side alone,
// Writer plus aztables' SubmitTransaction, and how many transactions the
// rows cost, which is what Table Storage bills and what bounds throughput:
//
//	go test -run '^$' -bench Writer -benchmem ./internal/index/
func BenchmarkWriter(b *testing.B) {
	for _, v := range []struct {
		name             string
		callers, objects int
	}{
		{"vault=busy", 40, 300},     // a few dozen identities, hundreds of secrets
		{"vault=shared", 400, 5000}, // a vault many teams share
	} {
		b.Run(v.name, func(b *testing.B) { benchWriter(b, benchChunks(b, v.callers, v.objects)) })
	}
}

func benchWriter(b *testing.B, chunks [][][]Entity) {
	var rows int
	for _, c := range chunks {
		for _, r := range c {
			rows += len(r)
		}
	}
	fake := &fakeTables{}
	svc, err := aztables.NewServiceClientWithNoCredential("http://127.0.0.1:9/devstoreaccount1/",
		&aztables.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: fake}})
	if err != nil {
		b.Fatal(err)
	}
	tables := NewTables(svc, "bench")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		w := tables.NewWriter(log, 8, 0)
		for _, c := range chunks {
			for _, recRows := range c {
				for _, e := range recRows {
					if err := w.Add(ctx, e); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := w.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	tx := float64(fake.batches.Load()) / float64(b.N)
	b.ReportMetric(float64(rows)/tx, "rows/tx")
	b.ReportMetric(1000*tx/float64(rows), "tx/1000rows")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
}

var (
	benchChunksMu   sync.Mutex
	benchChunksData = map[[2]int][][][]Entity{}
)

// benchChunks returns the rows of about 24 MB of records of one vault's
// busy hour, per record, cut into the 4 MiB chunks ingest commits. Callers
// and objects are drawn with skew from the given numbers of each.
func benchChunks(b *testing.B, callers, objects int) [][][]Entity {
	benchChunksMu.Lock()
	defer benchChunksMu.Unlock()
	if c, ok := benchChunksData[[2]int{callers, objects}]; ok {
		return c
	}
	var out [][][]Entity
	{
		samples, err := os.ReadFile("../parse/testdata/sekoia-intake-formats-keyvault.jsonl")
		if err != nil {
			b.Fatal(err)
		}
		lines := bytes.Split(bytes.TrimSpace(samples), []byte("\n"))
		var (
			reTime   = regexp.MustCompile(`"time":"[^"]*"`)
			reObject = regexp.MustCompile(`/(secrets|keys|certificates|deletedsecrets|deletedkeys)/[A-Za-z0-9-]+`)
			reOID    = regexp.MustCompile(`"(oid|http://schemas.microsoft.com/identity/claims/objectidentifier)":"[^"]*"`)
			reUPN    = regexp.MustCompile(`"(upn|unique_name|http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn)":"[^"]*"`)
			reIP     = regexp.MustCompile(`"callerIpAddress":"[^"]*"`)
			reVault  = regexp.MustCompile(`VAULTS/[A-Za-z0-9-]+`)
		)
		// A vault's traffic is skewed: a few callers and secrets are busy.
		rng := rand.New(rand.NewPCG(1, 2))
		zCaller := rand.NewZipf(rng, 1.3, 2, uint64(callers-1))
		zObject := rand.NewZipf(rng, 1.1, 4, uint64(objects-1))
		hour := time.Date(2025, 2, 1, 9, 0, 0, 0, time.UTC)
		const n = 18000
		var data []byte
		for i := range n {
			line := lines[rng.IntN(len(lines))]
			c, o := zCaller.Uint64(), zObject.Uint64()
			line = reTime.ReplaceAll(line, []byte(`"time":"`+parse.FormatTime(hour.Add(time.Duration(i)*time.Hour/n))+`"`))
			line = reObject.ReplaceAll(line, fmt.Appendf(nil, "/$1/object-%03d", o))
			line = reOID.ReplaceAll(line, fmt.Appendf(nil, `"$1":"%08x-0000-4000-8000-%012x"`, c, c))
			line = reUPN.ReplaceAll(line, fmt.Appendf(nil, `"$1":"caller%03d@contoso.onmicrosoft.com"`, c))
			line = reIP.ReplaceAll(line, fmt.Appendf(nil, `"callerIpAddress":"10.%d.%d.%d"`, c>>8, c&255, 1+rng.IntN(2)))
			line = reVault.ReplaceAll(line, []byte("VAULTS/KV-BENCH"))
			data = append(append(data, line...), '\n')
		}
		name := "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-BENCH/y=2025/m=02/d=01/h=09/m=00/PT1H.json"
		p := parse.NewReader(bytes.NewReader(data), parse.Options{Blob: name, Complete: true})
		var enc Encoder
		var rec parse.Record
		var chunk [][]Entity
		chunkStart := int64(0)
		for {
			err := p.Next(&rec)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			chunk = append(chunk, enc.Rows(nil, &rec, p.Raw(), "0123456789abcdef"))
			if p.Consumed()-chunkStart >= 4<<20 {
				chunk = append(chunk, enc.Postings(nil, chunkStart))
				out = append(out, chunk)
				chunk, chunkStart = nil, p.Consumed()
			}
		}
		if len(chunk) > 0 {
			chunk = append(chunk, enc.Postings(nil, chunkStart))
			out = append(out, chunk)
		}
	}
	benchChunksData[[2]int{callers, objects}] = out
	return out
}

// fakeTables answers every entity-group transaction with success, as Table
// Storage words it, and counts them.
type fakeTables struct {
	batches atomic.Int64
}

const fakeBatchReply = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n" +
	"--changesetresponse_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
	"HTTP/1.1 204 No Content\r\n\r\n\r\n--changesetresponse_1--\r\n--batchresponse_1--\r\n"

func (f *fakeTables) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	if !strings.HasSuffix(req.URL.Path, "$batch") {
		return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
	}
	f.batches.Add(1)
	return &http.Response{
		StatusCode: http.StatusAccepted,
		Header:     http.Header{"Content-Type": {"multipart/mixed; boundary=batchresponse_1"}},
		Body:       io.NopCloser(strings.NewReader(fakeBatchReply)),
		Request:    req,
	}, nil
}
