package faults

import (
	"fmt"
	"strings"
	"time"
)

// Records are Key Vault audit records in Azure Monitor's JSON Lines form,
// each with a correlation id unique in its case ("<prefix>-<n>"), so that
// "distinct correlation ids equal records written" is a test of exactly
// once. Callers, IPs and objects come from small sets, so that the lookup
// tables get full transactions rather than a partition per row.

var (
	genOps     = []string{"SecretGet", "SecretGet", "SecretGet", "SecretList", "KeyGet", "SecretSet"}
	genCallers = 4
	genIPs     = 16
	genObjects = 8
)

// record is record n of vault at t. pad adds that many spaces between two
// top-level members: valid JSON the index does not keep, so that a case
// can fill the 4 MiB between checkpoints with fewer records (and rows).
func record(vault, prefix string, n int, t time.Time, pad int) []byte {
	op := genOps[n%len(genOps)]
	status, sig := 200, "OK"
	if n%17 == 0 {
		status, sig = 403, "Forbidden"
	}
	c := n % genCallers
	return fmt.Appendf(nil, `{"time":"%s","resourceId":"/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s","operationName":"%s","operationVersion":"7.4","category":"AuditEvent",%s"resultType":"Success","resultSignature":"%s","durationMs":"%d","callerIpAddress":"10.9.0.%d","correlationId":"%s-%07d","identity":{"claim":{"oid":"0000000%d-0000-0000-0000-000000000000","upn":"user%d@example.com","appid":"app-%d"}},"properties":{"id":"https://%s.vault.azure.net/secrets/s%d/v1","clientInfo":"faults","httpStatusCode":%d,"requestUri":"https://%s.vault.azure.net/secrets/s%d?api-version=7.4","tlsVersion":"TLS1_2"}}`+"\n",
		t.UTC().Format("2006-01-02T15:04:05.0000000Z"), strings.ToUpper(vault), op, strings.Repeat(" ", pad), sig, n%900, 1+n%genIPs, prefix, n,
		c, c, c%2, strings.ToLower(vault), n%genObjects, status, strings.ToLower(vault), n%genObjects)
}

// records is count records from first, a millisecond apart from the start
// of hour (the blob's hour, so that CatchUp lists the blob).
func records(vault, prefix string, hour time.Time, first, count, pad int) []byte {
	var b []byte
	for n := first; n < first+count; n++ {
		b = append(b, record(vault, prefix, n, hour.Add(time.Duration(n)*time.Millisecond), pad)...)
	}
	return b
}

// blobName is the Azure Monitor path of vault's blob of hour.
func blobName(vault string, hour time.Time) string {
	hour = hour.UTC()
	return fmt.Sprintf("resourceId=/SUBSCRIPTIONS/0000-SUB/RESOURCEGROUPS/RG1/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/%s/y=%04d/m=%02d/d=%02d/h=%02d/m=00/PT1H.json",
		strings.ToUpper(vault), hour.Year(), hour.Month(), hour.Day(), hour.Hour())
}
