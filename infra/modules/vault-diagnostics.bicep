// Sends one Key Vault's AuditEvent log to the logs storage account, where
// Azure Monitor writes it as insights-logs-auditevent/…/PT1H.json. Deployed
// with `scope` set to the vault's resource group, which may be any.

@description('Name of the Key Vault (in this module\'s resource group).')
param vaultName string

@description('Resource id of the storage account the audit log is written to. Azure Monitor requires it in the same region as the vault.')
param storageAccountId string

@description('Name of the diagnostic setting; it carries the environment\'s token, so that two environments on one vault keep two settings.')
param settingName string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: settingName
  scope: vault
  properties: {
    storageAccountId: storageAccountId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}
