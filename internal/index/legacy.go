package index

import (
	"context"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/data/aztables"

	"github.com/kvaudit/kvaudit/internal/azstore"
)

// LegacyTables are the short names of the tables only layout 1 wrote.
var LegacyTables = []string{TableByCaller, TableByIP, TableByObject}

// DropLegacy deletes the tables of layout 1; one that does not exist is
// success. Call it only once every blob has been rebuilt in this layout.
func (t *Tables) DropLegacy(ctx context.Context) (dropped int, err error) {
	for _, short := range LegacyTables {
		_, err := t.svc.DeleteTable(ctx, t.Name(short), nil)
		if err = azstore.Classify(err); err != nil {
			if errors.Is(err, azstore.ErrNotFound) {
				continue
			}
			return dropped, fmt.Errorf("index: cannot delete table %q: %w", t.Name(short), err)
		}
		dropped++
	}
	return dropped, nil
}

// LegacyRows reports whether a table of layout 1 still holds a row (one
// request per table, a row at most each). While one does, the index is not
// wholly in this layout: queries refuse to answer and `handler backfill`
// rebuilds it.
func (t *Tables) LegacyRows(ctx context.Context) (bool, error) {
	for _, short := range LegacyTables {
		top := int32(1)
		sel := "PartitionKey"
		pager := t.Client(short).NewListEntitiesPager(&aztables.ListEntitiesOptions{Top: &top, Select: &sel})
		// A page may come back empty with a continuation: follow a few.
		for i := 0; i < 5 && pager.More(); i++ {
			page, err := pager.NextPage(ctx)
			if err = azstore.Classify(err); err != nil {
				if errors.Is(err, azstore.ErrNotFound) {
					break
				}
				return false, fmt.Errorf("index: read %q: %w", t.Name(short), err)
			}
			if len(page.Entities) > 0 {
				return true, nil
			}
		}
	}
	return false, nil
}

// OldLayoutNotice is what status and the API say while rows of layout 1
// remain.
const OldLayoutNotice = "the index holds rows written by an older kvaudit (row layout 1): queries are refused until `handler backfill` rebuilds it in layout 2"
