// Grants one principal built-in roles on one storage account. A module, so
// that main.bicep can reach an account in another resource group (an
// existing logs account) with `scope`.

@description('Storage account the roles are granted on (in this module\'s resource group).')
param storageAccountName string

@description('Principal (object) id of the managed identity.')
param principalId string

@description('Built-in role definition GUIDs to grant.')
param roleDefinitionIds array

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in roleDefinitionIds: {
  name: guid(account.id, principalId, roleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]
