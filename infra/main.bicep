// kvaudit on Azure Functions Flex Consumption: the function app, its
// storage, one user-assigned managed identity with the roles it needs,
// Application Insights, the Event Grid system topic of the logs account,
// and the Key Vault diagnostic settings that write the audit logs.
// Identity everywhere: no storage key or connection string is stored.
//
// azd up deploys it (azure.yaml, main.parameters.json); without azd:
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<name>
// The Event Grid subscription is made after the code is deployed, by
// hooks/postdeploy.sh (or .ps1).

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(32)
@description('Name of the environment (azd: AZURE_ENV_NAME); seeds resource names.')
param environmentName string

@description('Region of the function app and of every new resource.')
param location string = resourceGroup().location

@description('Existing storage account Key Vault already writes its audit logs to (the common case); empty to create one. Azure Monitor needs it in the vaults\' region.')
param logsStorageAccountName string = ''

@description('Resource group of logsStorageAccountName; empty for this one.')
param logsStorageResourceGroupName string = ''

@description('An Event Grid system topic the existing logs account already has (a storage account can have only one); empty to create one.')
param logsSystemTopicName string = ''

@description('Resource group of logsSystemTopicName; empty for the logs account\'s. Event Grid keeps a system topic in its source\'s subscription, not necessarily in its resource group.')
param logsSystemTopicResourceGroupName string = ''

@allowed([
  'new'
  'logs'
])
@description('Where the index tables live: a new account (new) or the logs account (logs).')
param indexStorage string = 'new'

@description('Resource ids of the Key Vaults to audit, separated by commas (a string, so that azd env set can give it). Each gets a diagnostic setting sending AuditEvent to the logs account; vaults may sit in any resource group or subscription.')
param keyVaultIds string = ''

@description('Resource ids, among keyVaultIds, of vaults that already send AuditEvent to the logs account through a diagnostic setting of their own, separated by commas: no kvaudit setting is made for them, since Azure Monitor refuses a second setting with the same category and destination. hooks/preprovision finds them.')
param vaultsAlreadyLogging string = ''

@minValue(1)
@maxValue(36600)
@description('Days of index kept (RetentionDays).')
param retentionDays int = 90

@description('NCRONTAB schedule of the CatchUp timer, which follows appends to PT1H.json (Event Grid reports only its creation).')
param catchUpSchedule string = '0 */2 * * * *'

@minValue(40)
@maxValue(1000)
@description('Most instances Flex Consumption scales the app to.')
param maximumInstanceCount int = 100

@allowed([
  512
  2048
  4096
])
@description('Memory of each instance, in MB.')
param instanceMemoryMB int = 2048

// ---- alerts (README "Alerts"): every one optional. The secrets may be Key
// Vault references (@Microsoft.KeyVault(SecretUri=…)), resolved with the
// app's identity (keyVaultReferenceIdentity), which then needs Key Vault
// Secrets User on that vault.

@description('AlertTuning: per-kind on/off, thresholds, severity, allow-lists (JSON); empty for the defaults.')
param alertTuning string = ''

@secure()
@description('AlertWebhookUrl: https URL receiving CloudEvents signed as Standard Webhooks; empty for none.')
param alertWebhookUrl string = ''

@secure()
@description('AlertWebhookSecret: whsec_ followed by base64 of 24 to 64 random bytes.')
param alertWebhookSecret string = ''

@secure()
@description('AlertTeamsUrl: a Teams Workflows webhook URL; empty for none.')
param alertTeamsUrl string = ''

@description('An existing Event Grid topic (CloudEvents 1.0 input schema) to publish alerts to; empty for none. The identity gets EventGrid Data Sender on it.')
param alertEventGridTopicName string = ''

@description('Resource group of alertEventGridTopicName; empty for this one.')
param alertEventGridTopicResourceGroupName string = ''

var tags = {
  'azd-env-name': environmentName
  app: 'kvaudit'
}
var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var appName = 'func-kvaudit-${token}'
var deploymentContainerName = 'app-package-${take(token, 8)}'

// The container Azure Monitor writes Key Vault audit logs to: the default of
// AuditLogsContainer and the path of BlobTrigger/function.json.
var logsContainerName = 'insights-logs-auditevent'

// Built-in role definitions.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageAccountContributor: '17d1049b-9a84-46fb-8f53-869881c3d3ab'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

var newLogsAccount = empty(logsStorageAccountName)
var logsAccountName = newLogsAccount ? 'stkvlogs${take(token, 16)}' : logsStorageAccountName
var logsResourceGroupName = newLogsAccount || empty(logsStorageResourceGroupName) ? resourceGroup().name : logsStorageResourceGroupName
var vaultIds = filter(map(split(keyVaultIds, ','), id => trim(id)), id => !empty(id))
var alreadyLogging = map(filter(map(split(vaultsAlreadyLogging, ','), id => trim(id)), id => !empty(id)), id => toLower(id))
var diagnosticVaultIds = filter(vaultIds, id => !contains(alreadyLogging, toLower(id)))

// Every name that lands in a resource group or on a resource other
// environments may share (the logs account's and the vaults' resource
// groups, the vaults themselves) carries the environment's token: two
// environments on one vault must not repoint each other's setting.
var diagnosticSettingName = 'kvaudit-${token}'
var eventSubscriptionName = 'kvaudit-${token}'
var newIndexAccount = indexStorage == 'new'

// ---- identity

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-kvaudit-${token}'
  location: location
  tags: tags
}

// ---- storage

var storageProperties = {
  minimumTlsVersion: 'TLS1_2'
  supportsHttpsTrafficOnly: true
  allowBlobPublicAccess: false
  allowSharedKeyAccess: false
}

// A new logs account keeps shared-key access. Azure Monitor writes the
// audit logs into it, and Microsoft's pages on diagnostic settings
// (learn.microsoft.com/azure/azure-monitor/essentials/diagnostic-settings)
// and on disallowing Shared Key (…/storage/common/shared-key-authorization-prevent)
// do not say that it can write to an account that disallows Shared Key.
// Losing every audit record silently is worse than a key kvaudit never
// uses (it reads by identity). An existing logs account keeps its own
// setting.
var logsStorageProperties = {
  minimumTlsVersion: 'TLS1_2'
  supportsHttpsTrafficOnly: true
  allowBlobPublicAccess: false
  allowSharedKeyAccess: true
}

// The host's own storage (AzureWebJobsStorage) and the deployment package.
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stkvhost${take(token, 16)}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: storageProperties

  resource blobs 'blobServices' = {
    name: 'default'

    resource deployment 'containers' = {
      name: deploymentContainerName
    }
  }
}

resource newLogsStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = if (newLogsAccount) {
  name: logsAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: logsStorageProperties

  resource blobs 'blobServices' = {
    name: 'default'

    resource auditLogs 'containers' = {
      name: logsContainerName
    }
  }
}

resource logsStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: logsAccountName
  scope: resourceGroup(logsResourceGroupName)
}

resource indexStorageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = if (newIndexAccount) {
  name: 'stkvindex${take(token, 15)}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: storageProperties
}

var logsBlobEndpoint = 'https://${logsAccountName}.blob.${environment().suffixes.storage}'
var logsQueueEndpoint = 'https://${logsAccountName}.queue.${environment().suffixes.storage}'
var indexAccountName = newIndexAccount ? indexStorageAccount.name : logsAccountName
var indexBlobEndpoint = 'https://${indexAccountName}.blob.${environment().suffixes.storage}'
var indexTableEndpoint = 'https://${indexAccountName}.table.${environment().suffixes.storage}'

// ---- roles of the app's identity

// Host storage: blobs (keys, timer and trigger leases, receipts, the
// deployment package), queues (the blob trigger's poison queue), tables
// (host diagnostic events), and the account itself where the host manages
// it (Storage Account Contributor, as Microsoft's blob-trigger permissions
// list for host storage).
module hostRoles 'modules/storage-roles.bicep' = {
  name: 'kvaudit-roles-host-${token}'
  params: {
    storageAccountName: hostStorage.name
    principalId: identity.properties.principalId
    roleDefinitionIds: [
      roles.storageBlobDataOwner
      roles.storageQueueDataContributor
      roles.storageTableDataContributor
      roles.storageAccountContributor
    ]
  }
}

// Logs account: the blob trigger with an identity connection needs Blob
// Data Owner (it writes receipts and reads the blobs) and Queue Data
// Contributor (Event Grid notifications and poison messages are queued on
// the trigger's connection).
module logsRoles 'modules/storage-roles.bicep' = {
  name: 'kvaudit-roles-logs-${token}'
  scope: resourceGroup(logsResourceGroupName)
  params: {
    storageAccountName: logsAccountName
    principalId: identity.properties.principalId
    roleDefinitionIds: [
      roles.storageBlobDataOwner
      roles.storageQueueDataContributor
    ]
  }
  dependsOn: [
    newLogsStorage
  ]
}

// Index account: kvaudit writes and reads its tables.
module indexRoles 'modules/storage-roles.bicep' = {
  name: 'kvaudit-roles-index-${token}'
  scope: resourceGroup(newIndexAccount ? resourceGroup().name : logsResourceGroupName)
  params: {
    storageAccountName: indexAccountName
    principalId: identity.properties.principalId
    roleDefinitionIds: [
      roles.storageTableDataContributor
    ]
  }
  dependsOn: [
    newLogsStorage
  ]
}

// ---- monitoring: the app's own logs, ingested with the identity

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-kvaudit-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-kvaudit-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---- the function app

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-kvaudit-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Alerts to an Event Grid topic: the role on it, and its endpoint.
var alertTopic = !empty(alertEventGridTopicName)
module alertTopicSender 'modules/alert-topic.bicep' = if (alertTopic) {
  name: 'kvaudit-alert-topic-${token}'
  scope: resourceGroup(empty(alertEventGridTopicResourceGroupName) ? resourceGroup().name : alertEventGridTopicResourceGroupName)
  params: {
    topicName: alertEventGridTopicName
    principalId: identity.properties.principalId
    roleDefinitionId: roles.eventGridDataSender
  }
}

// Every app setting. Flex Consumption refuses FUNCTIONS_WORKER_RUNTIME
// (functionAppConfig.runtime says it) and WEBSITE_RUN_FROM_PACKAGE
// (functionAppConfig.deployment says it). infra_test.go checks each name
// against internal/config.
var appSettings = {
  AzureWebJobsStorage__accountName: hostStorage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AuditLogsStorage__blobServiceUri: logsBlobEndpoint
  AuditLogsStorage__queueServiceUri: logsQueueEndpoint
  AuditLogsStorage__credential: 'managedidentity'
  AuditLogsStorage__clientId: identity.properties.clientId
  AuditIndexStorage__blobServiceUri: indexBlobEndpoint
  AuditIndexStorage__tableServiceUri: indexTableEndpoint
  AuditIndexStorage__credential: 'managedidentity'
  AuditIndexStorage__clientId: identity.properties.clientId
  RetentionDays: string(retentionDays)
  CatchUpSchedule: catchUpSchedule
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
  AlertTuning: alertTuning
  AlertWebhookUrl: alertWebhookUrl
  AlertWebhookSecret: alertWebhookSecret
  AlertTeamsUrl: alertTeamsUrl
  AlertEventGridTopicEndpoint: alertTopic ? alertTopicSender.outputs.endpoint : ''
  AlertEventGridClientId: alertTopic ? identity.properties.clientId : ''
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': 'kvaudit'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }

  // The roles first: the host reaches its storage as soon as settings land.
  resource settings 'config' = {
    name: 'appsettings'
    properties: appSettings
    dependsOn: [
      hostRoles
      logsRoles
      indexRoles
      metricsPublisher
    ]
  }
}

// ---- Event Grid: the logs account's system topic (subscription: postdeploy)

// The topic must be in the account's region, which the template knows for
// a new account and reads for an existing one: a module parameter may be
// read while deploying, a resource's location may not (BCP120).
module logsEvents 'modules/logs-events.bicep' = {
  name: 'kvaudit-logs-events-${token}'
  scope: resourceGroup(logsResourceGroupName)
  params: {
    storageAccountName: logsAccountName
    location: newLogsAccount ? location : logsStorage.location
    topicName: 'evgt-kvaudit-${token}'
    existingTopicName: logsSystemTopicName
    tags: tags
  }
  dependsOn: [
    newLogsStorage
  ]
}

// ---- Key Vault diagnostic settings, one per vault, in the vault's own
// subscription and resource group (/subscriptions/<s>/resourceGroups/<g>/
// providers/Microsoft.KeyVault/vaults/<name>).

module vaultDiagnostics 'modules/vault-diagnostics.bicep' = [for (vaultId, i) in diagnosticVaultIds: {
  name: 'kvaudit-diag-${i}-${token}'
  scope: resourceGroup(split(vaultId, '/')[2], split(vaultId, '/')[4])
  params: {
    vaultName: last(split(vaultId, '/'))
    storageAccountId: logsStorage.id
    settingName: diagnosticSettingName
  }
  dependsOn: [
    newLogsStorage
  ]
}]

// ---- outputs: azd stores them in its environment; hooks/postdeploy reads them.

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = resourceGroup().name
output AZURE_FUNCTION_APP_NAME string = app.name
output AZURE_FUNCTION_APP_HOSTNAME string = app.properties.defaultHostName
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AUDIT_LOGS_STORAGE_ACCOUNT string = logsAccountName
output AUDIT_LOGS_CONTAINER string = logsContainerName
output AUDIT_INDEX_STORAGE_ACCOUNT string = indexAccountName
output EVENTGRID_SYSTEM_TOPIC_NAME string = logsEvents.outputs.topicName
output EVENTGRID_SYSTEM_TOPIC_RESOURCE_GROUP string = empty(logsSystemTopicName) || empty(logsSystemTopicResourceGroupName) ? logsEvents.outputs.resourceGroupName : logsSystemTopicResourceGroupName
output EVENTGRID_SUBSCRIPTION_NAME string = eventSubscriptionName
output AUDIT_DIAGNOSTIC_SETTING_NAME string = diagnosticSettingName
output APPLICATIONINSIGHTS_NAME string = appInsights.name
