// kvaudit on Azure Functions Flex Consumption: the function app, its
// storage, one user-assigned managed identity with the roles it needs,
// Application Insights, a logs account (and its Event Grid system topic)
// in every region that holds vaults, and the Key Vault diagnostic
// settings that write each vault's audit logs to its region's account
// (issue 17). Identity everywhere: no storage key or connection string is
// stored.
//
// azd up deploys it (azure.yaml, main.parameters.json); without azd:
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<name>
// The Event Grid subscriptions are made after the code is deployed, by
// hooks/postdeploy.sh (or .ps1). The vaults' regions are not known to a
// template before it deploys (a resource's location must be a deploy-time
// constant, BCP120): hooks/preprovision reads them and passes them in
// keyVaultRegions and logsRegions.

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(32)
@description('Name of the environment (azd: AZURE_ENV_NAME); seeds resource names.')
param environmentName string

@description('Region of the function app and of every new resource.')
param location string = resourceGroup().location

@description('Existing storage account Key Vault already writes its audit logs to (the common case); empty to create one, in location. It is the first logs account (AuditLogsStorage), for the vaults of its region; Azure Monitor needs a vault\'s logs account in the vault\'s region.')
param logsStorageAccountName string = ''

@description('Region of logsStorageAccountName (hooks/preprovision reads it); ignored for a new account, which is made in location.')
param logsStorageLocation string = ''

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

@description('The region of each vault of keyVaultIds, in the same order, separated by commas (hooks/preprovision reads each vault\'s location). A vault without a region gets no diagnostic setting.')
param keyVaultRegions string = ''

@description('The logs account of every other region that holds vaults, separated by commas, each region|account|resourceGroup|systemTopic|topicResourceGroup: an empty account is a new one made by this template in that region; an existing account may name its existing system topic. hooks/preprovision writes it.')
param logsRegions string = ''

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
// AuditLogsContainer, the path of BlobTrigger/function.json (local runs)
// and the subject the event subscriptions filter on (hooks/postdeploy).
var logsContainerName = 'insights-logs-auditevent'

// Built-in role definitions.
var roles = {
  storageBlobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
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

// ---- regions (issue 17): Azure Monitor writes a vault's logs only to an
// account in the vault's region. The first logs account serves its own
// region; every other region holding vaults gets an account of its own.

// Regions are compared as 'westeurope', whatever the spelling given
// ('West Europe').
var firstLogsRegion = toLower(replace(trim(newLogsAccount ? location : logsStorageLocation), ' ', ''))
var vaultRegionList = split(keyVaultRegions, ',')
var vaults = [for (id, i) in vaultIds: {
  id: id
  region: toLower(replace(trim(join(take(skip(vaultRegionList, i), 1), '')), ' ', ''))
}]

// One entry a region, region|account|resourceGroup|topic|topicResourceGroup,
// padded so that every field exists; the first account's region is left out.
var regionFields = filter(map(filter(split(logsRegions, ','), e => !empty(trim(e))), e => split('${trim(e)}|||||', '|')), f => toLower(replace(trim(f[0]), ' ', '')) != firstLogsRegion)
var regional = [for f in regionFields: {
  region: toLower(replace(trim(f[0]), ' ', ''))
  newAccount: empty(f[1])
  // A new account's name derives from the environment and the region:
  // provisioning again finds the same account.
  account: empty(f[1]) ? 'stkvlog${take(uniqueString(subscription().id, resourceGroup().id, environmentName, toLower(replace(trim(f[0]), ' ', ''))), 13)}' : (f[1])
  resourceGroup: empty(f[1]) || empty(f[2]) ? resourceGroup().name : (f[2])
  topic: f[3]
  topicResourceGroup: empty(f[4]) ? (empty(f[1]) || empty(f[2]) ? resourceGroup().name : (f[2])) : (f[4])
}]
var regionalRegions = map(regional, r => (r.region))

// A vault gets kvaudit's diagnostic setting unless it already sends
// AuditEvent to its logs account, and unless its region has no logs
// account here (an unknown region: hooks/preprovision warned).
var diagnosticVaults = filter(vaults, v => !contains(alreadyLogging, toLower(v.id)) && (v.region == firstLogsRegion || contains(regionalRegions, v.region)))

// Every name that lands in a resource group or on a resource other
// environments may share (the logs account's and the vaults' resource
// groups, the vaults themselves) carries the environment's token: two
// environments on one vault must not repoint each other's setting.
var diagnosticSettingName = 'kvaudit-${token}'
var eventSubscriptionName = 'kvaudit-${token}'
var newIndexAccount = indexStorage == 'new'

// The container of each new logs account where Event Grid leaves the
// BlobCreated events it could not deliver within its retries (24 hours):
// the event subscriptions' dead-letter destination (hooks/postdeploy).
var deadLetterContainerName = 'kvaudit-deadletter'

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

    resource deadLetters 'containers' = {
      name: deadLetterContainerName
    }
  }
}

// The logs accounts of the other regions that hold vaults, where none was
// named: made in their region, like the first.
resource regionalLogsStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = [for r in regional: if (r.newAccount) {
  name: r.account
  location: r.region
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: logsStorageProperties
}]

// Their containers, named through the account (the blob service 'default'
// exists with every StorageV2 account): a looped resource's elements can
// be no one's parent in the rule check of scripts/bicep-rules.js.
resource regionalAuditLogs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for r in regional: if (r.newAccount) {
  name: '${r.account}/default/${logsContainerName}'
  dependsOn: [
    regionalLogsStorage
  ]
}]

resource regionalDeadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for r in regional: if (r.newAccount) {
  name: '${r.account}/default/${deadLetterContainerName}'
  dependsOn: [
    regionalLogsStorage
  ]
}]

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

// Logs accounts: kvaudit lists and reads the audit blobs, nothing more
// (the Event Grid trigger binds no storage connection; the package carries
// no blob trigger). A deployment made before issue 17 granted Blob Data
// Owner and Queue Data Contributor on the first account for the blob
// trigger; those assignments stay until removed by hand.
module logsRoles 'modules/storage-roles.bicep' = {
  name: 'kvaudit-roles-logs-${token}'
  scope: resourceGroup(logsResourceGroupName)
  params: {
    storageAccountName: logsAccountName
    principalId: identity.properties.principalId
    roleDefinitionIds: [
      roles.storageBlobDataReader
    ]
  }
  dependsOn: [
    newLogsStorage
  ]
}

module regionalLogsRoles 'modules/storage-roles.bicep' = [for (r, i) in regional: {
  name: 'kvaudit-roles-logs-${i}-${token}'
  scope: resourceGroup(r.resourceGroup)
  params: {
    storageAccountName: r.account
    principalId: identity.properties.principalId
    roleDefinitionIds: [
      roles.storageBlobDataReader
    ]
  }
  dependsOn: [
    regionalLogsStorage
  ]
}]

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
  AuditLogsStorage__credential: 'managedidentity'
  AuditLogsStorage__clientId: identity.properties.clientId
  AuditLogsRegion: firstLogsRegion
  AuditLogsAccounts: join(map(regional, r => '${r.account}:${r.region}'), ',')
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

// The settings of each other region's logs account, named after it
// (internal/config: AuditLogsStorage_<account>__…), by identity.
var regionalAppSettings = reduce(regional, {}, (acc, r) => union(acc, {
  'AuditLogsStorage_${r.account}__blobServiceUri': 'https://${r.account}.blob.${environment().suffixes.storage}'
  'AuditLogsStorage_${r.account}__credential': 'managedidentity'
  'AuditLogsStorage_${r.account}__clientId': identity.properties.clientId
}))

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
    properties: union(appSettings, regionalAppSettings)
    dependsOn: [
      hostRoles
      logsRoles
      regionalLogsRoles
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
    location: newLogsAccount ? location : (logsStorage.location)
    topicName: 'evgt-kvaudit-${token}'
    existingTopicName: logsSystemTopicName
    tags: tags
  }
  dependsOn: [
    newLogsStorage
  ]
}

// Each other region's account has its system topic too, in its region (a
// parameter here, from hooks/preprovision, so a deploy-time constant); an
// existing account may already have one (an account has at most one).
module regionalLogsEvents 'modules/logs-events.bicep' = [for (r, i) in regional: {
  name: 'kvaudit-logs-events-${i}-${token}'
  scope: resourceGroup(r.resourceGroup)
  params: {
    storageAccountName: r.account
    location: r.region
    topicName: 'evgt-kvaudit-${r.region}-${token}'
    existingTopicName: r.topic
    tags: tags
  }
  dependsOn: [
    regionalLogsStorage
  ]
}]

// ---- Key Vault diagnostic settings, one per vault, in the vault's own
// subscription and resource group (/subscriptions/<s>/resourceGroups/<g>/
// providers/Microsoft.KeyVault/vaults/<name>), each to the logs account of
// the vault's region (Azure Monitor refuses an account of another region).

module vaultDiagnostics 'modules/vault-diagnostics.bicep' = [for (v, i) in diagnosticVaults: {
  name: 'kvaudit-diag-${i}-${token}'
  scope: resourceGroup(split(v.id, '/')[2], split(v.id, '/')[4])
  params: {
    vaultName: last(split(v.id, '/'))
    storageAccountId: v.region == firstLogsRegion ? logsStorage.id : resourceId(regional[indexOf(regionalRegions, v.region)].resourceGroup, 'Microsoft.Storage/storageAccounts', regional[indexOf(regionalRegions, v.region)].account)
    settingName: diagnosticSettingName
  }
  dependsOn: [
    newLogsStorage
    regionalLogsStorage
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
// Every logs account's system topic, for hooks/postdeploy: topic|topic's
// resource group|account id, separated by commas, the first account's first.
output EVENTGRID_TOPICS string = join(concat(['${logsEvents.outputs.topicName}|${empty(logsSystemTopicName) || empty(logsSystemTopicResourceGroupName) ? logsEvents.outputs.resourceGroupName : logsSystemTopicResourceGroupName}|${logsStorage.id}'], [for (r, i) in regional: '${regionalLogsEvents[i].outputs.topicName}|${empty(r.topic) ? regionalLogsEvents[i].outputs.resourceGroupName : (r.topicResourceGroup)}|${resourceId(r.resourceGroup, 'Microsoft.Storage/storageAccounts', r.account)}']), ',')
// The first account's region and the other regions' accounts
// (region=account), for the next hooks/preprovision.
output AUDIT_LOGS_REGION string = firstLogsRegion
output AUDIT_LOGS_ACCOUNTS string = join(map(regional, r => '${r.region}=${r.account}'), ',')
output AUDIT_DIAGNOSTIC_SETTING_NAME string = diagnosticSettingName
output APPLICATIONINSIGHTS_NAME string = appInsights.name
