package query

import "strings"

// knownOperations are the operationName values Key Vault logs (Microsoft's
// "Azure Key Vault logging" reference). Table Storage compares strings
// exactly, so an operation a caller types in another case is mapped to the
// logged spelling before it reaches a filter; a name not listed here is
// used as given.
var knownOperations = []string{
	"Authentication",
	// Vault
	"VaultGet", "VaultPut", "VaultPatch", "VaultDelete", "VaultList", "VaultPurge", "VaultRecover",
	"VaultGetDeleted", "VaultListDeleted", "VaultAccessPolicyChangedEventGridNotification",
	// Keys
	"KeyCreate", "KeyGet", "KeyImport", "KeyDelete", "KeyUpdate", "KeyList", "KeyListVersions",
	"KeyBackup", "KeyRestore", "KeyEncrypt", "KeyDecrypt", "KeyWrap", "KeyUnwrap", "KeySign",
	"KeyVerify", "KeyGetDeleted", "KeyListDeleted", "KeyPurge", "KeyRecover", "KeyRotate",
	"KeyRotateIfDue", "KeyGetRotationPolicy", "KeySetRotationPolicy", "KeyRelease", "KeyGetRandomBytes",
	"KeyNearExpiryEventGridNotification", "KeyExpiredEventGridNotification", "KeyNewVersionCreatedEventGridNotification",
	// Secrets
	"SecretSet", "SecretGet", "SecretUpdate", "SecretDelete", "SecretList", "SecretListVersions",
	"SecretGetDeleted", "SecretListDeleted", "SecretBackup", "SecretRestore", "SecretPurge", "SecretRecover",
	"SecretNearExpiryEventGridNotification", "SecretExpiredEventGridNotification", "SecretNewVersionCreatedEventGridNotification",
	// Certificates
	"CertificateGet", "CertificateCreate", "CertificateImport", "CertificateUpdate", "CertificateList",
	"CertificateListVersions", "CertificateDelete", "CertificatePurge", "CertificateBackup", "CertificateRestore",
	"CertificateRecover", "CertificateGetDeleted", "CertificateListDeleted", "CertificatePolicyGet",
	"CertificatePolicyUpdate", "CertificatePolicySet", "CertificateContactsGet", "CertificateContactsSet",
	"CertificateContactsDelete", "CertificateIssuerGet", "CertificateIssuerSet", "CertificateIssuerUpdate",
	"CertificateIssuerDelete", "CertificateIssuersList", "CertificateEnroll", "CertificateRenew",
	"CertificatePendingGet", "CertificatePendingMerge", "CertificatePendingUpdate", "CertificatePendingDelete",
	"CertificateNearExpiryEventGridNotification", "CertificateExpiredEventGridNotification",
	"CertificateNewVersionCreatedEventGridNotification",
	// Managed storage accounts
	"StorageAccountGet", "StorageAccountSet", "StorageAccountUpdate", "StorageAccountDelete", "StorageAccountList",
	"StorageAccountRegenerateKey", "StorageSasDefinitionGet", "StorageSasDefinitionSet", "StorageSasDefinitionDelete",
	"StorageSasDefinitionList",
}

var operationsByFold = func() map[string]string {
	m := make(map[string]string, len(knownOperations))
	for _, op := range knownOperations {
		m[strings.ToLower(op)] = op
	}
	return m
}()

// CanonicalOperation returns the logged spelling of op when Key Vault is
// known to log it (SecretGet for secretget), else op unchanged.
func CanonicalOperation(op string) string {
	if c, ok := operationsByFold[strings.ToLower(op)]; ok {
		return c
	}
	return op
}
