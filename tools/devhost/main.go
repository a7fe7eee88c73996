// Command devhost plays the Azure Functions host on a machine without Core
// Tools, for `make run`: it loads audit records into Azurite as Azure
// Monitor would (append blobs at the resourceId=…/PT1H.json paths), and it
// polls the container like the blob trigger's polling source, sending the
// handler the host's exact invocation for every new or changed blob.
//
//	devhost seed -file F [-appends N] [-keep-times]
//	devhost poll -handler URL [-interval 5s] [-timer 10s] [-once]
//	devhost append -vault NAME [-n 1]
//	devhost receive [-addr 127.0.0.1:7072]   a local alert webhook (AlertWebhookSecret)
//
// The storage account comes from AuditLogsStorage, as for the handler.
// It is a development tool: nothing in production depends on it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/config"
	"github.com/kvaudit/kvaudit/internal/funchost/hosttest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: devhost seed -file F | devhost poll -handler URL")
		os.Exit(2)
	}
	// A development tool: Azurite unless told otherwise.
	if os.Getenv(config.SettingLogsStorage) == "" {
		_ = os.Setenv(config.SettingLogsStorage, "UseDevelopmentStorage=true")
	}
	s, err := config.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "devhost:", err)
		os.Exit(1)
	}
	bc, err := azstore.NewBlobClient(s.Logs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "devhost:", err)
		os.Exit(1)
	}
	cc := bc.ServiceClient().NewContainerClient(s.LogsContainer)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	switch os.Args[1] {
	case "seed":
		err = seed(ctx, cc, os.Args[2:])
	case "poll":
		err = poll(ctx, cc, s.Logs.BlobURL, os.Args[2:])
	case "append":
		err = appendNow(ctx, cc, os.Args[2:])
	case "receive":
		err = receive(ctx, os.Args[2:]) // receive.go
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "devhost:", err)
		os.Exit(1)
	}
}

// BlobPath is where Azure Monitor writes a record of vault resourceID at t.
func BlobPath(resourceID string, t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("resourceId=%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(resourceID), t.Year(), t.Month(), t.Day(), t.Hour())
}

// seed appends each record of a JSON Lines file to the blob of its vault
// and hour, in several Append Block calls per blob, as Azure Monitor does.
// Unless -keep-times, the records' times are first moved to the last hours
// (shiftTimes), so that the index keeps them (RetentionDays) and the
// queries' default window, the last 24 hours, finds them.
func seed(ctx context.Context, cc *container.Client, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	file := fs.String("file", "", "JSON Lines file of audit records")
	appends := fs.Int("appends", 3, "append blocks per blob")
	keep := fs.Bool("keep-times", false, "keep the records' own times (older than retention: not indexed)")
	_ = fs.Parse(args)
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	lines := splitLines(data)
	if !*keep {
		if lines, err = shiftTimes(lines, time.Now()); err != nil {
			return fmt.Errorf("%s: %w", *file, err)
		}
	}
	return seedLines(ctx, cc, lines, *appends, func(name string, n int) { fmt.Printf("seeded %s (%d records)\n", name, n) })
}

// splitLines is the non-empty lines of a JSON Lines file, without their
// newlines.
func splitLines(data []byte) [][]byte {
	var out [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// seedLines appends each record to the blob of its vault and hour, in
// up to appends Append Block calls per blob; done is told of each blob.
// Records without a time or a resourceId are left out.
func seedLines(ctx context.Context, cc *container.Client, lines [][]byte, appends int, done func(name string, records int)) error {
	if _, err := cc.Create(ctx, nil); err != nil && !errors.Is(azstore.Classify(err), azstore.ErrExists) {
		return fmt.Errorf("create container: %w", err)
	}
	blobs := map[string][][]byte{}
	for _, line := range lines {
		var head struct {
			Time       time.Time `json:"time"`
			ResourceID string    `json:"resourceId"`
		}
		if err := json.Unmarshal(line, &head); err != nil || head.ResourceID == "" {
			continue
		}
		p := BlobPath(head.ResourceID, head.Time)
		blobs[p] = append(blobs[p], append(append([]byte(nil), line...), '\n'))
	}
	names := make([]string, 0, len(blobs))
	for n := range blobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ab := cc.NewAppendBlobClient(n)
		if _, err := ab.Create(ctx, nil); err != nil {
			return fmt.Errorf("create %s: %w", n, err)
		}
		lines := blobs[n]
		per := max(1, (len(lines)+appends-1)/appends)
		for i := 0; i < len(lines); i += per {
			block := bytes.Join(lines[i:min(i+per, len(lines))], nil)
			if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(block)), nil); err != nil {
				return fmt.Errorf("append to %s: %w", n, err)
			}
		}
		if done != nil {
			done(n, len(lines))
		}
	}
	return nil
}

// shiftStep is the time between two successive distinct record times
// after shiftTimes.
const shiftStep = 5 * time.Minute

// shiftTimes moves the records' times to the last hours before now, so
// that sample records of any age make a demo that retention keeps and the
// default query window shows. The distinct times, in order, become
// shiftStep apart, the last one within shiftStep before now; each keeps its
// seconds and fraction, so equal times stay equal and order is kept. Only
// the "time" value changes, written as Key Vault writes it (7 fractional
// digits): every other byte of the record is as it was.
func shiftTimes(lines [][]byte, now time.Time) ([][]byte, error) {
	type stamp struct {
		raw string
		t   time.Time
	}
	stamps := make([]stamp, len(lines))
	var distinct []time.Time
	seen := map[time.Time]bool{}
	for i, line := range lines {
		var head struct {
			Time string `json:"time"`
		}
		if err := json.Unmarshal(line, &head); err != nil {
			return nil, fmt.Errorf("record %d: %w", i+1, err)
		}
		t, err := time.Parse(time.RFC3339Nano, head.Time)
		if err != nil {
			return nil, fmt.Errorf("record %d: time %q: %w", i+1, head.Time, err)
		}
		t = t.UTC()
		stamps[i] = stamp{head.Time, t}
		if !seen[t] {
			seen[t] = true
			distinct = append(distinct, t)
		}
	}
	sort.Slice(distinct, func(i, j int) bool { return distinct[i].Before(distinct[j]) })
	slot := make(map[time.Time]time.Time, len(distinct))
	base := now.UTC().Truncate(time.Minute).Add(-time.Duration(len(distinct)) * shiftStep)
	for i, t := range distinct {
		slot[t] = base.Add(time.Duration(i)*shiftStep + t.Sub(t.Truncate(time.Minute)))
	}
	out := make([][]byte, len(lines))
	for i, line := range lines {
		old := []byte(`"time":"` + stamps[i].raw + `"`)
		if !bytes.Contains(line, old) {
			return nil, fmt.Errorf("record %d: no %s to shift", i+1, old)
		}
		shifted := []byte(`"time":"` + slot[stamps[i].t].Format("2006-01-02T15:04:05.0000000Z") + `"`)
		out[i] = bytes.Replace(line, old, shifted, 1)
	}
	return out, nil
}

// poll lists the container every interval and invokes the handler for
// every blob whose ETag is new, passing the whole blob as the polling
// trigger does.
func poll(ctx context.Context, cc *container.Client, accountURL string, args []string) error {
	fs := flag.NewFlagSet("poll", flag.ExitOnError)
	handler := fs.String("handler", "http://127.0.0.1:7071", "handler base URL")
	interval := fs.Duration("interval", 5*time.Second, "time between listings")
	timer := fs.Duration("timer", 10*time.Second, "time between CatchUp timer invocations (0: none)")
	once := fs.Bool("once", false, "one listing, then exit")
	_ = fs.Parse(args)
	seen := map[string]string{}
	client := &http.Client{Timeout: 10 * time.Minute}
	var lastTimer time.Time
	for {
		if *timer > 0 && time.Since(lastTimer) >= *timer {
			lastTimer = time.Now()
			tick(ctx, client, *handler)
		}
		pager := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: to.Ptr("resourceId=")})
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				fmt.Fprintln(os.Stderr, "devhost: list:", err)
				break
			}
			for _, b := range page.Segment.BlobItems {
				name, etag := *b.Name, string(*b.Properties.ETag)
				if seen[name] == etag {
					continue
				}
				if err := invoke(ctx, client, cc, accountURL, *handler, name, b.Properties.ContentLength, etag); err != nil {
					fmt.Fprintln(os.Stderr, "devhost:", err)
					continue
				}
				seen[name] = etag
			}
		}
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(*interval):
		}
	}
}

// tick sends the CatchUp timer's invocation, as the host's timer does.
func tick(ctx context.Context, client *http.Client, handler string) {
	req, err := hosttest.NewTimerRequest(ctx, handler, hosttest.TimerInvocation{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "devhost: timer:", err)
		return
	}
	status, resp, err := hosttest.Do(client, req)
	if err != nil && status == 0 {
		fmt.Fprintln(os.Stderr, "devhost: timer:", err)
		return
	}
	for _, l := range resp.Logs {
		if !strings.Contains(l, " 0 read,") || status != http.StatusOK {
			fmt.Printf("[CatchUp %d] %s\n", status, l)
		}
	}
}

// appendNow appends n fresh records, timed now, to the current hour's blob
// of a vault, as Azure Monitor does while a vault is used.
func appendNow(ctx context.Context, cc *container.Client, args []string) error {
	fs := flag.NewFlagSet("append", flag.ExitOnError)
	vault := fs.String("vault", "testpermissionvault", "vault name")
	n := fs.Int("n", 1, "records to append")
	_ = fs.Parse(args)
	now := time.Now().UTC()
	resourceID := "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/DEMO/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/" + strings.ToUpper(*vault)
	name := BlobPath(resourceID, now)
	ab := cc.NewAppendBlobClient(name)
	if _, err := ab.GetProperties(ctx, nil); err != nil {
		if _, err := ab.Create(ctx, nil); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
	}
	var b bytes.Buffer
	for i := 0; i < *n; i++ {
		t := now.Add(time.Duration(i) * time.Microsecond)
		fmt.Fprintf(&b, `{"time":"%s","resourceId":"%s","operationName":"SecretGet","operationVersion":"7.4","category":"AuditEvent","resultType":"Success","resultSignature":"OK","durationMs":"12","callerIpAddress":"203.0.113.7","correlationId":"devhost-%d-%d","identity":{"claim":{"oid":"00000000-0000-0000-0000-00000000d3f0","upn":"dev@example.com","appid":"04b07795-8ddb-461a-bbee-02f9e1bf7b46"}},"properties":{"id":"https://%s.vault.azure.net/secrets/demo-secret/1","clientInfo":"devhost","httpStatusCode":200,"requestUri":"https://%s.vault.azure.net/secrets/demo-secret?api-version=7.4","tlsVersion":"TLS1_2"}}`+"\n",
			t.Format("2006-01-02T15:04:05.0000000Z"), resourceID, now.UnixNano(), i, strings.ToLower(*vault), strings.ToLower(*vault))
	}
	if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(b.Bytes())), nil); err != nil {
		return fmt.Errorf("append to %s: %w", name, err)
	}
	fmt.Printf("appended %d record(s) at %s to %s\n", *n, now.Format(time.RFC3339Nano), name)
	return nil
}

func invoke(ctx context.Context, client *http.Client, cc *container.Client, accountURL, handler, name string, length *int64, etag string) error {
	dl, err := cc.NewBlobClient(name).DownloadStream(ctx, nil)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	defer dl.Body.Close()
	req, err := hosttest.NewBlobRequest(ctx, handler, hosttest.BlobInvocation{
		Name: name, AccountURL: accountURL, Content: dl.Body, Binary: true,
		ContentLength: deref(length), ETag: etag,
	})
	if err != nil {
		return err
	}
	status, resp, err := hosttest.Do(client, req)
	if err != nil {
		return fmt.Errorf("invoke for %s: %w", name, err)
	}
	for _, l := range resp.Logs {
		fmt.Printf("[BlobTrigger %d] %s\n", status, l)
	}
	if status != http.StatusOK {
		return fmt.Errorf("handler answered %d for %s; retrying next round", status, name)
	}
	return nil
}

func deref[T any](p *T) T {
	var z T
	if p != nil {
		z = *p
	}
	return z
}
