package parse_test

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kvaudit/kvaudit/internal/parse"
)

// A growing blob is read up to its last complete line, then resumed from
// the checkpoint once it has grown. The vault comes from the blob name
// here, as these records have no resourceId.
func ExampleReader() {
	const name = "resourceId=/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/MYVAULT/y=2024/m=04/d=03/h=14/m=00/PT1H.json"
	blob := `{"time":"2024-04-03T14:03:10.7886260Z","operationName":"SecretGet","resultSignature":"Forbidden","properties":{"id":"https://myvault.vault.azure.net/secrets/db-password"}}
not json
{"time":"2024-04-03T14:05:00Z","operationName":"KeyGet","properties":{"httpStatusCode":200,"requestUri":"https://myvault.vault.azure.net/keys/k1?api-version=7.4"}}
`
	read := func(data string, base int64, format parse.Format) (int64, parse.Format) {
		p := parse.NewReader(strings.NewReader(data), parse.Options{Blob: name, BaseOffset: base, Format: format})
		var rec parse.Record
		for {
			err := p.Next(&rec)
			var bad *parse.RecordError
			switch {
			case err == nil:
				fmt.Println(rec.Offset, parse.FormatTime(rec.Time), rec.Vault, rec.OperationName, rec.Status, rec.ObjectType, rec.ObjectName)
			case errors.As(err, &bad):
				fmt.Println(bad.Offset, "skipped:", bad.Reason)
			case err == io.EOF:
				return p.Consumed(), p.Format()
			default:
				panic(err)
			}
		}
	}

	cut := len(blob) - 40 // the blob so far ends inside the third line
	checkpoint, format := read(blob[:cut], 0, parse.FormatUnknown)
	fmt.Println("checkpoint", checkpoint, format)
	checkpoint, _ = read(blob[checkpoint:], checkpoint, format)
	fmt.Println("checkpoint", checkpoint)
	// Output:
	// 0 2024-04-03T14:03:10.7886260Z myvault SecretGet 403 secret db-password
	// 172 skipped: invalid JSON at record byte 1: invalid literal
	// checkpoint 181 jsonl
	// 181 2024-04-03T14:05:00.0000000Z myvault KeyGet 200 key k1
	// checkpoint 345
}
