package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/azuritetest"
	"github.com/kvaudit/kvaudit/internal/index"
)

// counter counts the requests an SDK client sends, by kind, so that the
// cost figures use the transactions really sent, and the bytes their
// bodies carry: what blob reads download and table writes upload is what
// crosses regions when the logs account and the index (or the app) are in
// different ones (issue 17).
type counter struct {
	next                             http.RoundTripper
	tableHost                        string
	tableBatch, tableOther, blobReqs atomic.Int64
	// blobDown is the blob responses' body bytes (Content-Length), tableUp
	// the table requests' body bytes.
	blobDown, tableUp atomic.Int64
}

func (c *counter) Do(req *http.Request) (*http.Response, error) {
	blob := req.URL.Host != c.tableHost
	switch {
	case blob:
		c.blobReqs.Add(1)
	case strings.HasSuffix(req.URL.Path, "$batch"):
		c.tableBatch.Add(1)
	default:
		c.tableOther.Add(1)
	}
	if !blob && req.ContentLength > 0 {
		c.tableUp.Add(req.ContentLength)
	}
	resp, err := c.next.RoundTrip(req)
	// A HEAD (GetProperties) answers the blob's length without a body.
	if err == nil && blob && req.Method != http.MethodHead && resp.ContentLength > 0 {
		c.blobDown.Add(resp.ContentLength)
	}
	return resp, err
}

func (c *counter) reset() {
	c.tableBatch.Store(0)
	c.tableOther.Store(0)
	c.blobReqs.Store(0)
	c.blobDown.Store(0)
	c.tableUp.Store(0)
}

// clientOptions mirror internal/azstore's (retry policy, ApplicationID),
// with a counting transport.
func clientOptions(c *counter) azcore.ClientOptions {
	return azcore.ClientOptions{
		Retry: policy.RetryOptions{
			MaxRetries:    5,
			TryTimeout:    60 * time.Second,
			RetryDelay:    200 * time.Millisecond,
			MaxRetryDelay: 10 * time.Second,
		},
		Telemetry: policy.TelemetryOptions{ApplicationID: azstore.ApplicationID},
		Transport: c,
	}
}

// clients are Azurite's blob and table service clients, counted.
type clients struct {
	blob  *azblob.Client
	table *aztables.ServiceClient
	count *counter
}

func newClients(az *azuritetest.Azurite) (*clients, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	u, err := url.Parse(az.TableURL)
	if err != nil {
		return nil, err
	}
	c := &counter{next: tr, tableHost: u.Host}
	bcred, err := service.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		return nil, err
	}
	blob, err := azblob.NewClientWithSharedKeyCredential(az.BlobURL+"/", bcred, &azblob.ClientOptions{ClientOptions: clientOptions(c)})
	if err != nil {
		return nil, err
	}
	tcred, err := aztables.NewSharedKeyCredential(azuritetest.AccountName, azuritetest.AccountKey)
	if err != nil {
		return nil, err
	}
	table, err := aztables.NewServiceClientWithSharedKey(az.TableURL+"/", tcred, &aztables.ClientOptions{ClientOptions: clientOptions(c)})
	if err != nil {
		return nil, err
	}
	return &clients{blob: blob, table: table, count: c}, nil
}

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// dropTables deletes every index table of prefix; Azurite holds all rows in
// memory, and a measurement must not leave them to the next.
func (c *clients) dropTables(ctx context.Context, prefix string) error {
	for _, short := range index.AllTables {
		_, err := c.table.DeleteTable(ctx, prefix+short, nil)
		if err = azstore.Classify(err); err != nil && !errors.Is(err, azstore.ErrNotFound) {
			return fmt.Errorf("delete table %s: %w", prefix+short, err)
		}
	}
	return nil
}

// newContainer creates a container of a fresh name.
func (c *clients) newContainer(ctx context.Context, kind string) (*container.Client, string, error) {
	name := "kvbench-" + kind + "-" + randomID()
	cc := c.blob.ServiceClient().NewContainerClient(name)
	if _, err := cc.Create(ctx, nil); err != nil {
		return nil, "", fmt.Errorf("create container %s: %w", name, err)
	}
	return cc, name, nil
}

// appendBlob creates name as an append blob holding data, appended in
// blocks of at most 4 MiB cut at line ends, as Azure Monitor appends.
func appendBlob(ctx context.Context, cc *container.Client, name string, data []byte) error {
	ab := cc.NewAppendBlobClient(name)
	if _, err := ab.Create(ctx, nil); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	for len(data) > 0 {
		n := len(data)
		if n > maxAppend {
			n = bytes.LastIndexByte(data[:maxAppend], '\n') + 1
			if n == 0 {
				n = maxAppend
			}
		}
		if _, err := ab.AppendBlock(ctx, streaming.NopCloser(bytes.NewReader(data[:n])), nil); err != nil {
			return fmt.Errorf("append to %s: %w", name, err)
		}
		data = data[n:]
	}
	return nil
}

// maxAppend is Append Block's limit.
const maxAppend = 4 << 20
