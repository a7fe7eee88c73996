package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/kvaudit/kvaudit/internal/azstore"
	"github.com/kvaudit/kvaudit/internal/index"
	"github.com/kvaudit/kvaudit/internal/parse"
)

// Blobs of several logs accounts (issue 17). A blob is named everywhere by
// its identity (parse.BlobID): its path in the first logs account's
// container (Ingester.Container), "@<account>/<path>" in another's
// (Ingester.Accounts). Checkpoints, lineages, the vault registry and the
// list of blobs with work left are all keyed by the identity, so the same
// path in two accounts is two blobs.

// ErrUnknownAccount is a blob identity naming a logs account the settings
// do not list (any more): nothing is read, and nothing is recorded
// against the blob.
var ErrUnknownAccount = errors.New("ingest: the blob's logs account is not in the settings")

// Container returns the container holding the blob identified by id and
// the blob's path in it.
func (in *Ingester) container(id string) (*container.Client, string, error) {
	acct, path := parse.SplitBlobID(id)
	if acct == "" || acct == in.FirstAccount {
		if acct != "" {
			// The first account's blobs are identified by their bare
			// path; "@first/…" would be a second identity of the same
			// blob, with its own checkpoint and rows.
			return nil, "", fmt.Errorf("%w: %q names the first logs account %q, whose blobs are identified by their path alone", ErrUnknownAccount, id, acct)
		}
		return in.Container, path, nil
	}
	c := in.Accounts[acct]
	if c == nil {
		return nil, "", fmt.Errorf("%w: %q is in logs account %q (add it to AuditLogsAccounts to read it)", ErrUnknownAccount, id, acct)
	}
	return c, path, nil
}

// BlobClient returns the client of the blob identified by id.
func (in *Ingester) BlobClient(id string) (*blob.Client, error) {
	c, path, err := in.container(id)
	if err != nil {
		return nil, err
	}
	return c.NewBlobClient(path), nil
}

// ContainerOf returns the container of logs account acct ("" or the first
// account's name: Container) and whether kvaudit reads it.
func (in *Ingester) ContainerOf(acct string) (*container.Client, bool) {
	if acct == "" || acct == in.FirstAccount {
		return in.Container, in.Container != nil
	}
	c := in.Accounts[acct]
	return c, c != nil
}

// ErrFirstAccountChanged says that AuditLogsStorage now names another
// account than the one the index's unqualified blob identities belong to.
// Ingesting would file the new account's blobs under the old account's
// checkpoints. It is also azstore.ErrTransient: every path that waits for
// storage waits for it (the host retries, CatchUp stops), and the next
// try succeeds once the setting names the account again.
var ErrFirstAccountChanged error = firstChanged{}

type firstChanged struct{}

func (firstChanged) Error() string {
	return "ingest: AuditLogsStorage names another logs account than the index was written from"
}
func (firstChanged) Is(target error) bool { return target == azstore.ErrTransient }

// firstAccountRow is where the index records the name of the logs account
// whose blobs it identifies by bare path, in the Blobs table's state
// partition.
const (
	statePartition  = "~state"
	stateFirstLogs  = "logs"
	firstAccountKey = "FirstAccount"
)

// checkFirst runs CheckFirstAccount until it succeeds once per Ingester.
// Calls racing before that each check (the check is idempotent). An
// Ingester without FirstAccount checks nothing (tests, tools reading one
// account).
func (in *Ingester) checkFirst(ctx context.Context) error {
	if in.FirstAccount == "" || atomic.LoadInt32(&in.firstOK) == 1 {
		return nil
	}
	if err := CheckFirstAccount(ctx, in.Tables, in.FirstAccount); err != nil {
		return err
	}
	atomic.StoreInt32(&in.firstOK, 1)
	return nil
}

// CheckFirstAccount records name as the logs account whose blobs the index
// identifies by bare path, when the index records none (a new index, or
// one written before kvaudit read several accounts: its blobs were all the
// first account's), and fails with an error wrapping
// ErrFirstAccountChanged when it records another. Repeating it is free of
// effects.
func CheckFirstAccount(ctx context.Context, t *index.Tables, name string) error {
	if err := t.Ensure(ctx); err != nil {
		return err
	}
	client := t.Client(index.TableBlobs)
	resp, err := client.GetEntity(ctx, statePartition, stateFirstLogs, nil)
	err = azstore.Classify(err)
	switch {
	case err == nil:
		var row map[string]any
		if err := json.Unmarshal(resp.Value, &row); err != nil {
			return fmt.Errorf("ingest: the index's first logs account is not readable: %w", err)
		}
		if got, _ := row[firstAccountKey].(string); got != name {
			return fmt.Errorf("%w: the index identifies the blobs of %q by their path, and AuditLogsStorage is now %q: set AuditLogsStorage back to %q (and list %q in AuditLogsAccounts), or start a new index (AuditIndexTablePrefix)",
				ErrFirstAccountChanged, got, name, got, name)
		}
		return nil
	case !errors.Is(err, azstore.ErrNotFound):
		return fmt.Errorf("ingest: read the index's first logs account: %w", err)
	}
	body, _ := json.Marshal(map[string]string{"PartitionKey": statePartition, "RowKey": stateFirstLogs, firstAccountKey: name})
	_, err = client.AddEntity(ctx, body, nil)
	if err = azstore.Classify(err); err != nil {
		if errors.Is(err, azstore.ErrExists) {
			return CheckFirstAccount(ctx, t, name) // another instance wrote it first
		}
		return fmt.Errorf("ingest: record the index's first logs account: %w", err)
	}
	return nil
}
