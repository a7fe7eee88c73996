// Lets the app's identity publish alerts to an existing Event Grid topic
// (input schema CloudEvents 1.0): EventGrid Data Sender on the topic, and
// the topic's endpoint for AlertEventGridTopicEndpoint. A module, so that
// main.bicep can reach a topic in another resource group with `scope`.

@description('Existing Event Grid topic (in this module\'s resource group).')
param topicName string

@description('Principal (object) id of the managed identity.')
param principalId string

@description('EventGrid Data Sender role definition GUID.')
param roleDefinitionId string

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, roleDefinitionId)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output endpoint string = topic.properties.endpoint
